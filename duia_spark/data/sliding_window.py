"""Trailing-window counts advanced by one day instead of recounted over the whole window.

A count over the `w` days before D equals the count over the `w` days before D-1, plus
day D-1, minus day D-1-w. Advancing yesterday's counts reads two days of events per
window, whatever the window's length, so a night costs what the day's volume costs, not
what the history's does. Pure DataFrame → DataFrame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class WindowCount:
    """Output column `name`: the sum of daily column `source` over the `days` days before D."""

    name: str
    source: str
    days: int


def days_read(as_of: dt.date, counts: list[WindowCount]) -> list[dt.date]:
    """The event days that advancing to `as_of` reads: D-1 and each window's D-1-w."""
    added = as_of - dt.timedelta(days=1)
    return sorted({added, *(added - dt.timedelta(days=c.days) for c in counts)})


def advance_window_counts(
    previous: DataFrame, daily: DataFrame, key: str, counts: list[WindowCount], as_of: dt.date
) -> DataFrame:
    """`key` and every count as of `as_of`, from `previous` (the counts as of `as_of` - 1).

    `daily` holds one row per (`key`, event_date) with the `source` columns; only the days
    of `days_read` matter. Keys missing on a side count 0. Keys whose counts all fall to 0
    stay in the result: the caller decides which rows it keeps.
    """
    added = as_of - dt.timedelta(days=1)
    deltas = []
    for c in counts:
        dropped = added - dt.timedelta(days=c.days)
        sign = (
            F.when(F.col("event_date") == F.lit(added), F.lit(1))
            .when(F.col("event_date") == F.lit(dropped), F.lit(-1))
            .otherwise(F.lit(0))
        )
        deltas.append(F.sum(sign * F.coalesce(F.col(c.source), F.lit(0))).alias(f"_d_{c.name}"))
    change = (
        daily.where(F.col("event_date").isin(days_read(as_of, counts))).groupBy(key).agg(*deltas)
    )
    old = previous.select(key, *[F.col(c.name).alias(f"_p_{c.name}") for c in counts])
    joined = old.join(change, key, "full_outer")
    return joined.select(
        key,
        *[
            (
                F.coalesce(F.col(f"_p_{c.name}"), F.lit(0))
                + F.coalesce(F.col(f"_d_{c.name}"), F.lit(0))
            )
            .cast("long")
            .alias(c.name)
            for c in counts
        ],
    )
