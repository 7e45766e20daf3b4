"""`duia segment --date D [--full-rebuild]`: silver.user_activity as of the start of D
(low / mid / high).

Incremental by default: the counts as of D-1 plus day D-1 minus the day that left the
window. Without a usable D-1 partition (first run, a gap, another window) it recounts the
whole window and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.activity import (
    activity_window,
    advance_user_activity,
    segment_users_by_activity,
)
from duia_spark.data.schema import SEGMENTS
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import (
    add_full_rebuild_argument,
    events_between,
    previous_partition,
    proceed_without_events,
    run_date,
)

NAME = "segment"
HELP = "activity segment per user as of the start of --date → silver.user_activity"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_full_rebuild_argument(p, "the whole activity window")


def for_day(cfg: Config, day: dt.date, full_rebuild: bool = False) -> int:
    """D's activity segment per user (silver.user_activity), advanced from the day before
    or recounted over the window."""
    spark = build_spark_session(cfg, "duia-segment")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    first, _ = activity_window(day, cfg.activity)
    events = events_between(lake, first, day)
    stale = F.col("window_days") != F.lit(cfg.activity.window_days)
    prev, why = previous_partition(
        lake,
        "user_activity",
        "activity_date",
        day,
        stale,
        full_rebuild=full_rebuild,
    )
    if prev is None:
        print(f"[segment] {day}: counting the whole window ({why})")
        activity = segment_users_by_activity(events, day, cfg.activity)
    else:
        # Reads the days it adds and drops and D itself (partition-pruned), not the window.
        activity = advance_user_activity(prev, lake.read("events"), day, cfg.activity)
    # The report is counted while writing (no second read of the partition).
    counts = lake.replace_partitions(
        activity,
        "user_activity",
        "activity_date",
        [day],
        summary=[F.count_if(F.col("segment") == s).alias(s) for s in SEGMENTS],
    )
    total = sum(counts.values())
    print(
        f"[segment] {day} ({'recounted' if prev is None else 'advanced from the day before'}): "
        f"{total:,d} users (window {first}..{day} excl., {cfg.activity.window_days} days) "
        f"→ {lake.path('user_activity')}"
    )
    for seg in SEGMENTS:
        n = counts.get(seg, 0)
        print(f"[segment]   {seg:<5s} {n:>10,d}  {100.0 * n / max(total, 1):5.1f}%")
    print(f"[segment] done in {time.time() - t0:.1f}s")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return for_day(cfg, run_date(args, NAME), getattr(args, "full_rebuild", False))
