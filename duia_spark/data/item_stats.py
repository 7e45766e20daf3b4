"""Item statistics as of the start of a day: exposures and positive rates over trailing windows.

For each window w in `cfg.windows_days`, counts cover event_date in [as_of - w, as_of - 1]
(never `as_of` itself). Columns per window: `exposures_{w}d`, `{signal}_{w}d` and
`{signal}_rate_{w}d` (null when the item had no exposure in the window).
`advance_item_stats` gives the same rows from the day before's (sliding_window.py). Pure.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import ItemStatsConfig
from duia_spark.data.activity import check_signals
from duia_spark.data.sliding_window import WindowCount, advance_window_counts, days_read


def item_stats_columns(cfg: ItemStatsConfig) -> list[str]:
    cols = []
    for w in cfg.windows_days:
        cols.append(f"exposures_{w}d")
        cols += [f"{s}_{w}d" for s in cfg.rate_signals]
        cols += [f"{s}_rate_{w}d" for s in cfg.rate_signals]
    return cols


def item_stats_schema(cfg: ItemStatsConfig) -> T.StructType:
    fields = [T.StructField("item_id", T.StringType(), False)]
    for c in item_stats_columns(cfg):
        tp = T.DoubleType() if "_rate_" in c else T.LongType()
        fields.append(T.StructField(c, tp, True))
    fields.append(T.StructField("stats_date", T.DateType(), False))
    return T.StructType(fields)


def item_stats_window(as_of: dt.date, cfg: ItemStatsConfig) -> tuple[dt.date, dt.date]:
    return as_of - dt.timedelta(days=max(cfg.windows_days)), as_of - dt.timedelta(days=1)


def daily_item_counts(events: DataFrame, cfg: ItemStatsConfig) -> DataFrame:
    """One row per (item, event_date): exposures `n` and the sum of each rate signal."""
    return events.groupBy("item_id", "event_date").agg(
        F.count(F.lit(1)).alias("n"),
        *[F.sum(F.coalesce(F.col(s), F.lit(0))).alias(s) for s in cfg.rate_signals],
    )


def item_counts(cfg: ItemStatsConfig) -> list[WindowCount]:
    """item_stats' counts as trailing-window sums of daily_item_counts' columns."""
    out = []
    for w in cfg.windows_days:
        out.append(WindowCount(f"exposures_{w}d", "n", w))
        out += [WindowCount(f"{s}_{w}d", s, w) for s in cfg.rate_signals]
    return out


def _check(cfg: ItemStatsConfig) -> None:
    check_signals(cfg.rate_signals, "item_stats.rate_signals")
    if not cfg.windows_days or min(cfg.windows_days) < 1:
        raise ValueError("item_stats.windows_days: need at least one window of >= 1 day")


def compute_item_stats(events: DataFrame, as_of: dt.date, cfg: ItemStatsConfig) -> DataFrame:
    """One row per item exposed in the longest window before `as_of`."""
    _check(cfg)
    first, last = item_stats_window(as_of, cfg)
    # Per item and day first (small), then every window from the daily rows.
    daily = daily_item_counts(events.where(F.col("event_date").between(first, last)), cfg)
    aggs = []
    for c in item_counts(cfg):
        inside = F.col("event_date") >= F.lit(as_of - dt.timedelta(days=c.days))
        aggs.append(F.sum(F.when(inside, F.col(c.source)).otherwise(0)).cast("long").alias(c.name))
    return _with_rates(daily.groupBy("item_id").agg(*aggs), as_of, cfg)


def advance_item_stats(
    previous: DataFrame, events: DataFrame, as_of: dt.date, cfg: ItemStatsConfig
) -> DataFrame:
    """The same rows as `compute_item_stats(events, as_of, cfg)`, from `previous`
    (item_stats as of `as_of` - 1, same windows and signals): adds day `as_of` - 1 and
    drops, per window, the day that left it — a few days of events, not the longest window."""
    _check(cfg)
    counts = item_counts(cfg)
    daily = daily_item_counts(events.where(F.col("event_date").isin(days_read(as_of, counts))), cfg)
    longest = f"exposures_{max(cfg.windows_days)}d"
    stats = advance_window_counts(previous, daily, "item_id", counts, as_of)
    return _with_rates(stats.where(F.col(longest) > 0), as_of, cfg)


def _with_rates(stats: DataFrame, as_of: dt.date, cfg: ItemStatsConfig) -> DataFrame:
    rates = [
        F.when(F.col(f"exposures_{w}d") > 0, F.col(f"{s}_{w}d") / F.col(f"exposures_{w}d"))
        .cast("double")
        .alias(f"{s}_rate_{w}d")
        for w in cfg.windows_days
        for s in cfg.rate_signals
    ]
    out = stats.select("*", *rates, F.lit(as_of).alias("stats_date"))
    return out.select(*[f.name for f in item_stats_schema(cfg).fields])
