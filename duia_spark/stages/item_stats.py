"""`duia item-stats --date D [--full-rebuild]`: silver.item_stats as of the start of D.

Incremental by default: the counts as of D-1 plus day D-1 minus, per window, the day
that left it. Without a usable D-1 partition (first run, a gap, other windows or
signals) it recounts the longest window and says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from functools import reduce

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.item_stats import (
    advance_item_stats,
    compute_item_stats,
    item_counts,
    item_stats_window,
)
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import (
    add_full_rebuild_argument,
    events_between,
    previous_partition,
    proceed_without_events,
    run_date,
)

NAME = "item-stats"
HELP = "item exposures and positive rates over trailing windows as of --date → silver.item_stats"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_full_rebuild_argument(p, "the longest window")


def _stale(lake: Lakehouse, cfg: Config):
    """Rows of item_stats that another config wrote: a count column missing or null."""
    columns = set(lake.read("item_stats").columns) if lake.exists("item_stats") else set()
    names = [c.name for c in item_counts(cfg.item_stats)]
    if any(n not in columns for n in names):
        return F.lit(True)
    return reduce(lambda a, b: a | b, [F.col(n).isNull() for n in names])


def for_day(cfg: Config, day: dt.date, full_rebuild: bool = False) -> int:
    """Item exposure / positive counts as of D (silver.item_stats), advanced from the day
    before or recounted over the longest window."""
    spark = build_spark_session(cfg, "duia-item-stats")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    first, last = item_stats_window(day, cfg.item_stats)
    events = events_between(lake, first, last)
    prev, why = previous_partition(
        lake,
        "item_stats",
        "stats_date",
        day,
        _stale(lake, cfg),
        full_rebuild=full_rebuild,
    )
    if prev is None:
        print(f"[item-stats] {day}: counting the whole window ({why})")
        stats = compute_item_stats(events, day, cfg.item_stats)
    else:
        # Reads the few days it adds and drops (partition-pruned), not the window.
        stats = advance_item_stats(prev, lake.read("events"), day, cfg.item_stats)
    w = max(cfg.item_stats.windows_days)
    s = lake.replace_partitions(  # the report is gathered while writing
        stats,
        "item_stats",
        "stats_date",
        [day],
        summary=[F.count(F.lit(1)).alias("items"), F.sum(f"exposures_{w}d").alias("exp")],
    )
    print(
        f"[item-stats] {day} ({'recounted' if prev is None else 'advanced from the day before'}): "
        f"{s['items']:,d} items, {s['exp'] or 0:,d} exposures in the last "
        f"{w} days (windows {cfg.item_stats.windows_days}) → {lake.path('item_stats')}"
    )
    print(f"[item-stats] done in {time.time() - t0:.1f}s")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return for_day(cfg, run_date(args, NAME), getattr(args, "full_rebuild", False))
