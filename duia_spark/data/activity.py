"""Activity segments: how active each user was *before* a day, and low / mid / high.

`segment_users_by_activity(events, as_of, cfg)` looks at the trailing window
[as_of - window_days, as_of - 1] only — never at `as_of` itself — so that samples on
`as_of` can use the segment without leaking their own day. `advance_user_activity`
gives the same rows from the day before's (sliding_window.py). Pure DataFrame → DataFrame.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import ActivityConfig
from duia_spark.data.schema import SIGNALS
from duia_spark.data.sliding_window import WindowCount, advance_window_counts, days_read

USER_ACTIVITY_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("active_days", T.IntegerType(), False),
        T.StructField("valid_interactions", T.IntegerType(), False),
        T.StructField("exposures", T.IntegerType(), False),
        T.StructField("window_days", T.IntegerType(), False),
        T.StructField("segment", T.StringType(), False),
        T.StructField("activity_date", T.DateType(), False),
    ]
)


def check_signals(names: list[str], key: str) -> None:
    """Fail with the config key's name when a signal is not one bronze.events has."""
    unknown = [s for s in names if s not in SIGNALS]
    if unknown:
        raise ValueError(f"{key}: unknown signal(s) {unknown}; known: {list(SIGNALS)}")


def is_valid_interaction(cfg: ActivityConfig) -> Column:
    """True when any valid signal is 1, or play time reaches the configured minimum."""
    check_signals(cfg.valid_signals, "activity.valid_signals")
    conds = [F.coalesce(F.col(s), F.lit(0)) == 1 for s in cfg.valid_signals]
    if cfg.valid_min_play_time_ms > 0:
        conds.append(F.coalesce(F.col("play_time_ms"), F.lit(0)) >= cfg.valid_min_play_time_ms)
    return reduce(lambda a, b: a | b, conds) if conds else F.lit(False)


def activity_window(as_of: dt.date, cfg: ActivityConfig) -> tuple[dt.date, dt.date]:
    """First and last event_date (inclusive) that count for the segment as of `as_of`."""
    return as_of - dt.timedelta(days=cfg.window_days), as_of - dt.timedelta(days=1)


def segment_of(active_days: Column, valid: Column, cfg: ActivityConfig) -> Column:
    low = (active_days < cfg.low_max_active_days) | (valid < cfg.low_min_valid_interactions)
    high = active_days >= cfg.high_min_active_days
    return F.when(low, "low").when(high, "high").otherwise("mid")


def daily_user_activity(events: DataFrame, cfg: ActivityConfig) -> DataFrame:
    """One row per (user, event_date): exposures `n`, valid interactions `valid`, `active` 1."""
    return events.groupBy("user_id", "event_date").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(is_valid_interaction(cfg).cast("int")).alias("valid"),
        F.lit(1).alias("active"),
    )


def activity_counts(cfg: ActivityConfig) -> list[WindowCount]:
    """user_activity's counts as trailing-window sums of daily_user_activity's columns."""
    return [
        WindowCount("active_days", "active", cfg.window_days),
        WindowCount("valid_interactions", "valid", cfg.window_days),
        WindowCount("exposures", "n", cfg.window_days),
    ]


def segment_users_by_activity(events: DataFrame, as_of: dt.date, cfg: ActivityConfig) -> DataFrame:
    """One row per user seen in the window or on `as_of`, in USER_ACTIVITY_SCHEMA.

    `events` may hold any dates; only the window counts. A user seen only on `as_of`
    (no history) gets zero counts and is `low` (cold).
    """
    first, last = activity_window(as_of, cfg)
    daily = daily_user_activity(events.where(F.col("event_date").between(first, last)), cfg)
    per_user = daily.groupBy("user_id").agg(
        F.count(F.lit(1)).cast("int").alias("active_days"),
        F.sum("valid").cast("int").alias("valid_interactions"),
        F.sum("n").cast("int").alias("exposures"),
    )
    return _with_segments(per_user, events, as_of, cfg)


def advance_user_activity(
    previous: DataFrame, events: DataFrame, as_of: dt.date, cfg: ActivityConfig
) -> DataFrame:
    """The same rows as `segment_users_by_activity(events, as_of, cfg)`, from `previous`
    (user_activity as of `as_of` - 1, same window): adds day `as_of` - 1 and drops the
    day that left the window, reading three days of events instead of the whole window."""
    counts = activity_counts(cfg)
    daily = daily_user_activity(
        events.where(F.col("event_date").isin(days_read(as_of, counts))), cfg
    )
    per_user = advance_window_counts(previous, daily, "user_id", counts, as_of).where(
        F.col("active_days") > 0
    )
    return _with_segments(per_user, events, as_of, cfg)


def _with_segments(
    per_user: DataFrame, events: DataFrame, as_of: dt.date, cfg: ActivityConfig
) -> DataFrame:
    """Window counts per user + the users seen on `as_of` (zero counts) → the schema."""
    today = events.where(F.col("event_date") == F.lit(as_of)).select("user_id").distinct()
    users = per_user.select("user_id").unionByName(today).distinct()
    out = users.join(per_user, "user_id", "left").fillna(
        0, subset=["active_days", "valid_interactions", "exposures"]
    )
    return out.select(
        "user_id",
        F.col("active_days").cast("int").alias("active_days"),
        F.col("valid_interactions").cast("int").alias("valid_interactions"),
        F.col("exposures").cast("int").alias("exposures"),
        F.lit(cfg.window_days).alias("window_days"),
        segment_of(F.col("active_days"), F.col("valid_interactions"), cfg).alias("segment"),
        F.lit(as_of).alias("activity_date"),
    )
