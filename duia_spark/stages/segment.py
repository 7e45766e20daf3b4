"""`duia segment --date D`: silver.user_activity as of the start of D (low / mid / high)."""

from __future__ import annotations

import argparse
import time

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.activity import activity_window, segment_users_by_activity
from duia_spark.data.schema import SEGMENTS
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import events_between, proceed_without_events, run_date

NAME = "segment"
HELP = "activity segment per user as of the start of --date → silver.user_activity"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # only the common options


def run(cfg: Config, args: argparse.Namespace) -> int:
    day = run_date(args, NAME)
    spark = build_spark_session(cfg, "duia-segment")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    first, _ = activity_window(day, cfg.activity)
    events = events_between(lake, first, day)
    lake.replace_partitions(
        segment_users_by_activity(events, day, cfg.activity),
        "user_activity",
        "activity_date",
        [day],
    )
    written = lake.read("user_activity").where(F.col("activity_date") == F.lit(day))
    counts = {r["segment"]: r["count"] for r in written.groupBy("segment").count().collect()}
    total = sum(counts.values())
    print(
        f"[segment] {day}: {total:,d} users (window {first}..{day} excl., "
        f"{cfg.activity.window_days} days) → {lake.path('user_activity')}"
    )
    for seg in SEGMENTS:
        n = counts.get(seg, 0)
        print(f"[segment]   {seg:<5s} {n:>10,d}  {100.0 * n / max(total, 1):5.1f}%")
    print(f"[segment] done in {time.time() - t0:.1f}s")
    return 0
