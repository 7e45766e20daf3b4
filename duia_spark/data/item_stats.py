"""Item statistics as of the start of a day: exposures and positive rates over trailing windows.

For each window w in `cfg.windows_days`, counts cover event_date in [as_of - w, as_of - 1]
(never `as_of` itself). Columns per window: `exposures_{w}d`, `{signal}_{w}d` and
`{signal}_rate_{w}d` (null when the item had no exposure in the window). Pure.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import ItemStatsConfig
from duia_spark.data.activity import check_signals


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


def compute_item_stats(events: DataFrame, as_of: dt.date, cfg: ItemStatsConfig) -> DataFrame:
    """One row per item exposed in the longest window before `as_of`."""
    check_signals(cfg.rate_signals, "item_stats.rate_signals")
    if not cfg.windows_days or min(cfg.windows_days) < 1:
        raise ValueError("item_stats.windows_days: need at least one window of >= 1 day")
    first, last = item_stats_window(as_of, cfg)
    # Per item and day first (small), then every window from the daily rows.
    daily = (
        events.where(F.col("event_date").between(first, last))
        .groupBy("item_id", "event_date")
        .agg(
            F.count(F.lit(1)).alias("n"),
            *[F.sum(F.coalesce(F.col(s), F.lit(0))).alias(s) for s in cfg.rate_signals],
        )
    )
    aggs = []
    for w in cfg.windows_days:
        inside = F.col("event_date") >= F.lit(as_of - dt.timedelta(days=w))
        aggs.append(
            F.sum(F.when(inside, F.col("n")).otherwise(0)).cast("long").alias(f"exposures_{w}d")
        )
        for s in cfg.rate_signals:
            aggs.append(
                F.sum(F.when(inside, F.col(s)).otherwise(0)).cast("long").alias(f"{s}_{w}d")
            )
    stats = daily.groupBy("item_id").agg(*aggs)
    rates = [
        F.when(F.col(f"exposures_{w}d") > 0, F.col(f"{s}_{w}d") / F.col(f"exposures_{w}d"))
        .cast("double")
        .alias(f"{s}_rate_{w}d")
        for w in cfg.windows_days
        for s in cfg.rate_signals
    ]
    out = stats.select("*", *rates, F.lit(as_of).alias("stats_date"))
    return out.select(*[f.name for f in item_stats_schema(cfg).fields])
