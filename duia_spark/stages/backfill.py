"""`duia backfill --date D1 --end-date D2 [--stages ...]`: run feature stages day by day.

For each date in order, every chosen stage runs in the order given (default: segment,
sequences, item-stats, samples), so each day's sequences can advance from the day before.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from duia_spark.config import Config, ConfigError
from duia_spark.stages import load_stage
from duia_spark.stages.day_inputs import run_date

NAME = "backfill"
HELP = "run the feature stages for every date from --date to --end-date, in order"
FEATURE_STAGES = ("segment", "sequences", "item-stats", "samples")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--end-date", type=dt.date.fromisoformat, required=True, help="last date (inclusive)"
    )
    p.add_argument(
        "--stages",
        default=",".join(FEATURE_STAGES),
        help=f"comma list, run in this order per date (default {','.join(FEATURE_STAGES)})",
    )
    p.add_argument(
        "--full-rebuild",
        action="store_true",
        help="recount the first date's segment, sequences and item-stats from the events "
        "(later dates advance from it)",
    )


def run(cfg: Config, args: argparse.Namespace) -> int:
    first = run_date(args, NAME)
    last = args.end_date
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in FEATURE_STAGES]
    if unknown or not stages:
        raise ConfigError(f"--stages: unknown {unknown}; choose from {','.join(FEATURE_STAGES)}")
    if last < first:
        raise ConfigError(f"--end-date {last} is before --date {first}")
    return backfill(cfg, first, last, stages, bool(args.full_rebuild))


def backfill(
    cfg: Config,
    first: dt.date,
    last: dt.date,
    stages: list[str] | tuple[str, ...] = FEATURE_STAGES,
    full_rebuild: bool = False,
) -> int:
    """Run `stages` for every day first..last in order; a run of every feature stage
    stamps the stale ranges it covers as rebuilt (ops.stale_days)."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    t0 = time.time()
    for i, day in enumerate(days, 1):
        for stage in stages:
            t = time.time()
            print(f"[backfill] {day} ({i}/{len(days)}) {stage} ...")
            rc = load_stage(stage).for_day(cfg, day, full_rebuild=full_rebuild and i == 1)
            if rc != 0:
                print(f"[backfill] {day} {stage} failed (exit {rc}); stopping")
                return rc
            print(f"[backfill] {day} ({i}/{len(days)}) {stage} ok in {time.time() - t:.1f}s")
    print(f"[backfill] {len(days)} day(s) × {len(stages)} stage(s) done in {time.time() - t0:.1f}s")
    if set(stages) == set(FEATURE_STAGES):
        from duia_spark.lakehouse import Lakehouse
        from duia_spark.session import build_spark_session
        from duia_spark.stale_days import mark_rebuilt

        mark_rebuilt(Lakehouse(build_spark_session(cfg, "duia-backfill"), cfg), first, last)
    return 0
