"""`duia sequences --date D [--full-rebuild]`: silver.user_sequences as of the start of D.

Incremental by default: the snapshot as of D-1 plus the events of D-1. Without a D-1
snapshot (first run, or a gap) it rebuilds from all history and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.sequences import advance_user_sequences, build_user_sequences
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import (
    add_full_rebuild_argument,
    previous_partition,
    proceed_without_events,
    run_date,
)

NAME = "sequences"
HELP = "last-N behaviour sequences per user as of the start of --date → silver.user_sequences"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_full_rebuild_argument(p, "from all history")


def for_day(cfg: Config, day: dt.date, full_rebuild: bool = False) -> int:
    """Behaviour sequences as of the start of D (silver.user_sequences), advanced from the
    day before or rebuilt from all events before D."""
    spark = build_spark_session(cfg, "duia-sequences")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    events = lake.read("events")
    prev, why = previous_partition(
        lake, "user_sequences", "as_of_date", day, full_rebuild=full_rebuild
    )
    if prev is None:
        print(f"[sequences] {day}: full rebuild from all events before {day} ({why})")
        snapshot = build_user_sequences(events, day, cfg.sequences)
        mode = "full rebuild"
    else:
        prev_day = day - dt.timedelta(days=1)
        day_events = events.where(F.col("event_date") == F.lit(prev_day))
        snapshot = advance_user_sequences(prev, day_events, day, cfg.sequences)
        mode = f"incremental from {prev_day}"
    # The report is gathered while writing (no second read of the snapshot).
    s = lake.replace_partitions(
        snapshot,
        "user_sequences",
        "as_of_date",
        [day],
        summary=[
            F.count(F.lit(1)).alias("users"),
            F.avg(F.size("exposures")).alias("exp"),
            F.avg(F.size("positives")).alias("pos"),
            F.avg(F.size("negatives")).alias("neg"),
        ],
    )
    print(
        f"[sequences] {day} ({mode}): {s['users']:,d} users, mean lengths "
        f"exposures {s['exp'] or 0:.1f} / positives {s['pos'] or 0:.1f} / negatives {s['neg'] or 0:.1f}"
        f" → {lake.path('user_sequences')}"
    )
    print(f"[sequences] done in {time.time() - t0:.1f}s")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return for_day(cfg, run_date(args, NAME), getattr(args, "full_rebuild", False))
