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
from duia_spark.pipeline import (
    LEDGER_SCHEMA,
    NIGHTLY_STAGES,
    baseline_variants,
    plan_stages,
    require_raw,
)
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
    p.add_argument(
        "--full",
        action="store_true",
        help="train the models on the whole train.train_days window tonight (default: "
        "continue from the last models on the days since their data date)",
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


def run_stage(
    cfg: Config, stage: str, day: dt.date, raw: str | None, source: str, full: bool = False
) -> None:
    """One ledger stage of the night, through the stages' typed functions; raises when
    one fails."""
    from duia_spark.stages import (
        evaluate,
        ingest,
        item_stats,
        samples,
        score,
        segment,
        sequences,
        train,
    )

    day_stages = {
        "segment": segment,
        "sequences": sequences,
        "item-stats": item_stats,
        "samples": samples,
    }
    if stage == "ingest":
        calls = [lambda: ingest.ingest(cfg, ingest.IngestRequest(source, require_raw(raw), day))]
    elif stage in day_stages:
        calls = [lambda: day_stages[stage].for_day(cfg, day)]
    elif stage == "train":
        calls = [lambda: train.train(cfg, train.TrainRequest(day, full=full))]
    elif stage == "train-baselines":
        variants = baseline_variants(cfg.evaluate.baselines, cfg.model.variant)
        calls = [
            lambda v=v: train.train(
                cfg, train.TrainRequest(day, variant=v, full=full, register=False)
            )
            for v in variants
        ]
    elif stage == "evaluate":
        calls = [lambda: evaluate.evaluate(cfg, day)]
    elif stage == "score":
        calls = [lambda: score.score(cfg, day)]
    else:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(NIGHTLY_STAGES)}")
    for call in calls:
        rc = call()
        if rc != 0:
            raise RuntimeError(f"{stage} exited with {rc}")


def rebuild_stale_days(cfg: Config, lake: Lakehouse, day: dt.date) -> None:
    """Rebuild the feature days a late or corrected drop made stale (ops.stale_days),
    from the earliest up to the day before D, before D's own stages; raises when a
    stage fails (the ranges stay pending, so a re-run tries again)."""
    from duia_spark.stages.backfill import backfill
    from duia_spark.stale_days import pending

    stale = pending(lake, day)
    if stale is None:
        return
    # the days up to D's eve; later ones too when they were built already (an old night re-run)
    first, last = stale[0], max(day - dt.timedelta(days=1), stale[1])
    print(
        f"[nightly] {day}: features of {first}..{stale[1]} were built before a late drop "
        f"landed; rebuilding {first}..{last} first"
    )
    if backfill(cfg, first, last) != 0:
        raise RuntimeError(f"rebuilding the stale days {first}..{last} failed")


def _fail(lake: Lakehouse, day: dt.date, stage: str, started, t0: float, e: Exception) -> None:
    message = f"{type(e).__name__}: {e}"
    record(lake, day, stage, "failed", started, time.time() - t0, message[:2000])
    print(f"[nightly] {day} ✗ {stage} failed after {time.time() - t0:.0f}s: {message}")
    print(f"[nightly] fix it and re-run `duia nightly --date {day}` to resume at {stage}")


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("nightly needs --date D")
    day = args.date
    spark = build_spark_session(cfg, "duia-nightly")
    lake = Lakehouse(spark, cfg)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    todo = plan_stages(
        NIGHTLY_STAGES, succeeded_stages(lake, day), args.from_stage, only, args.force
    )
    skipped = [s for s in NIGHTLY_STAGES if s not in todo]
    print(
        f"[nightly] {day}: running {', '.join(todo) or 'nothing'}"
        + (f" (already done: {', '.join(skipped)})" if skipped else "")
    )
    t_all = time.time()
    if todo:
        try:
            rebuild_stale_days(cfg, lake, day)
        except Exception as e:
            _fail(lake, day, todo[0], _now(), t_all, e)
            return 1
    for stage in todo:
        started, t0 = _now(), time.time()
        record(lake, day, stage, "running", started)
        print(f"[nightly] {day} ▶ {stage}", flush=True)
        try:
            # `cfg` already carries --conf/--set/--lakehouse.
            run_stage(cfg, stage, day, args.raw, args.source, args.full)
        except Exception as e:
            _fail(lake, day, stage, started, t0, e)
            return 1
        record(lake, day, stage, "succeeded", started, time.time() - t0)
        print(f"[nightly] {day} ✓ {stage} in {time.time() - t0:.0f}s", flush=True)
    print(f"[nightly] {day} done in {time.time() - t_all:.0f}s")
    return 0
