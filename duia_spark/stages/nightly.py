"""`duia nightly --date D --raw PATH`: ingest → segment → sequences → item-stats → samples →
train (+ baselines) → evaluate → score, each recorded in ops/run_ledger.

A re-run skips the stages that already succeeded for D; a failed run resumes at the stage
that failed. `--from-stage S` re-runs S and everything after it; `--only S1,S2` runs just
those. Exit code 1 on failure, naming the stage and the reason.

The CLI holds D's run lease for the whole night (`run_lease.py`): a second
`duia nightly --date D`, or any stage for D, refuses while this one runs. The stages
below run in this process and share the lease (leases are re-entrant per process).
`--force` re-runs finished stages; it never takes a lease over (`--take-over-lease`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.lakehouse import Lakehouse
from duia_spark.pipeline import LEDGER_SCHEMA, NIGHTLY_STAGES, plan_stages, stage_calls
from duia_spark.session import build_spark_session

NAME = "nightly"
HELP = "run the whole nightly pipeline for --date, resumable through the run ledger"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw", help="raw drops folder to ingest D from (skip ingest with --from-stage segment)"
    )
    p.add_argument(
        "--source",
        default="synthetic",
        help="raw layout for ingest (synthetic, kuairand, movielens)",
    )
    p.add_argument(
        "--from-stage", choices=NIGHTLY_STAGES, help="re-run this stage and all after it"
    )
    p.add_argument("--only", help=f"comma list of stages to run: {','.join(NIGHTLY_STAGES)}")
    p.add_argument(
        "--force", action="store_true", help="re-run stages that already succeeded for D"
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def record(
    lake: Lakehouse, day: dt.date, stage: str, status: str, started, seconds=None, message=None
) -> None:
    row = [(day, stage, status, started, _now() if status != "running" else None, seconds, message)]
    lake.upsert(lake.spark.createDataFrame(row, LEDGER_SCHEMA), "run_ledger", ["run_date", "stage"])


def succeeded_stages(lake: Lakehouse, day: dt.date) -> set[str]:
    if not lake.exists("run_ledger"):
        return set()
    rows = lake.read("run_ledger").where(
        (F.col("run_date") == day) & (F.col("status") == "succeeded")
    )
    return {r["stage"] for r in rows.select("stage").collect()}  # <= a dozen rows


def run(cfg: Config, args: argparse.Namespace) -> int:
    from duia_spark.cli import build_parser
    from duia_spark.stages import STAGE_MODULES, load_stage

    if args.date is None:
        raise ValueError("nightly needs --date D")
    day = args.date
    available = tuple(s for s in NIGHTLY_STAGES if s in STAGE_MODULES or s == "train-baselines")
    spark = build_spark_session(cfg, "duia-nightly")
    lake = Lakehouse(spark, cfg)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    todo = plan_stages(available, succeeded_stages(lake, day), args.from_stage, only, args.force)
    skipped = [s for s in available if s not in todo]
    print(
        f"[nightly] {day}: running {', '.join(todo) or 'nothing'}"
        + (f" (already done: {', '.join(skipped)})" if skipped else "")
    )
    parser = build_parser()
    t_all = time.time()
    for stage in todo:
        started, t0 = _now(), time.time()
        record(lake, day, stage, "running", started)
        print(f"[nightly] {day} ▶ {stage}", flush=True)
        try:
            calls = stage_calls(
                stage, day, args.source, args.raw, cfg.evaluate.baselines, cfg.model.variant
            )
            for call in calls:
                # Parsed like the CLI, so each stage gets its own defaults; `cfg` already
                # carries --conf/--set/--lakehouse.
                sub = parser.parse_args([call.command, *call.flags])
                rc = load_stage(call.command).run(cfg, sub)
                if rc != 0:
                    raise RuntimeError(
                        f"duia {call.command} {' '.join(call.flags)} exited with {rc}"
                    )
        except Exception as e:
            record(
                lake,
                day,
                stage,
                "failed",
                started,
                time.time() - t0,
                f"{type(e).__name__}: {e}"[:2000],
            )
            print(
                f"[nightly] {day} ✗ {stage} failed after {time.time() - t0:.0f}s: {type(e).__name__}: {e}"
            )
            print(f"[nightly] fix it and re-run `duia nightly --date {day}` to resume at {stage}")
            return 1
        record(lake, day, stage, "succeeded", started, time.time() - t0)
        print(f"[nightly] {day} ✓ {stage} in {time.time() - t0:.0f}s", flush=True)
    print(f"[nightly] {day} done in {time.time() - t_all:.0f}s")
    return 0
