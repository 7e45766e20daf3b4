"""`duia generate`: synthetic daily drops with planted ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import time

from duia_spark.config import Config
from duia_spark.session import build_spark_session
from duia_spark.sources.synthetic import generate

NAME = "generate"
HELP = "write synthetic daily interaction-log drops (+ ground truth) to a folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder for the raw drops")
    p.add_argument("--users", type=int, help="number of users (generator.users)")
    p.add_argument("--items", type=int, help="number of items (generator.items)")
    p.add_argument("--days", type=int, help="number of daily drops (generator.days)")
    p.add_argument("--seed", type=int, help="random seed (generator.seed)")
    p.add_argument("--start-date", help="first drop's date, YYYY-MM-DD (generator.start_date)")
    p.add_argument("--formats", help="comma list of csv,parquet (generator.formats)")
    p.add_argument(
        "--dirty-rate",
        type=float,
        default=0.0,
        help="share of rows corrupted the way real exports go wrong (exercises the quarantine)",
    )


def run(cfg: Config, args: argparse.Namespace) -> int:
    g = cfg.generator
    updates = {
        "users": args.users,
        "items": args.items,
        "days": args.days,
        "seed": args.seed,
        "start_date": args.start_date,
        "formats": args.formats.split(",") if args.formats else None,
    }
    g = dataclasses.replace(g, **{k: v for k, v in updates.items() if v is not None})
    spark = build_spark_session(cfg, "duia-generate")
    t0 = time.time()
    generate(spark, g, args.out, dirty_rate=args.dirty_rate)
    print(
        f"[generate] wrote {g.days} daily drops for {g.users:,} users × {g.items:,} items "
        f"to {args.out} in {time.time() - t0:.1f}s (truth in {args.out}/truth/)"
    )
    return 0
