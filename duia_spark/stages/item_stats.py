"""`duia item-stats --date D`: silver.item_stats as of the start of D."""

from __future__ import annotations

import argparse
import time

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.item_stats import compute_item_stats, item_stats_window
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import events_between, proceed_without_events, run_date

NAME = "item-stats"
HELP = "item exposures and positive rates over trailing windows as of --date → silver.item_stats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # only the common options


def run(cfg: Config, args: argparse.Namespace) -> int:
    day = run_date(args, NAME)
    spark = build_spark_session(cfg, "duia-item-stats")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    first, last = item_stats_window(day, cfg.item_stats)
    stats = compute_item_stats(events_between(lake, first, last), day, cfg.item_stats)
    lake.replace_partitions(stats, "item_stats", "stats_date", [day])
    w = max(cfg.item_stats.windows_days)
    s = (
        lake.read("item_stats")
        .where(F.col("stats_date") == F.lit(day))
        .agg(F.count(F.lit(1)).alias("items"), F.sum(f"exposures_{w}d").alias("exp"))
        .first()
    )
    print(
        f"[item-stats] {day}: {s['items']:,d} items, {s['exp'] or 0:,d} exposures in the last "
        f"{w} days (windows {cfg.item_stats.windows_days}) → {lake.path('item_stats')}"
    )
    print(f"[item-stats] done in {time.time() - t0:.1f}s")
    return 0
