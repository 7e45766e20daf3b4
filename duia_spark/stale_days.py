"""ops.stale_days: feature days built before a late or corrected drop landed.

`duia ingest` of a past date X whose later features already exist records the range
X..last built day here (and says so). The night that follows rebuilds the feature stages
from the earliest recorded day up to the day before its own (`duia nightly`), as does
`duia backfill` over a range that covers it; either stamps the rows `rebuilt_at`. The
train stage reads which days were rebuilt after the model it continues from was trained
and trains on them again (training/incremental.py).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.lakehouse import Lakehouse

TABLE = "stale_days"
SCHEMA = T.StructType(
    [
        T.StructField("first_day", T.DateType(), False),  # the late drop's first day
        T.StructField("last_day", T.DateType(), False),  # the last feature day built then
        T.StructField("recorded_at", T.TimestampType(), False),
        T.StructField("rebuilt_at", T.TimestampType(), True),  # null: not rebuilt yet
    ]
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def record_stale(lake: Lakehouse, first: dt.date, last: dt.date) -> None:
    """Note that the features of first..last were built before a drop of `first` landed."""
    row = lake.spark.createDataFrame([(first, last, _now(), None)], SCHEMA)
    lake.upsert(row, TABLE, ["first_day", "last_day", "recorded_at"])


def pending(lake: Lakehouse, before: dt.date) -> tuple[dt.date, dt.date] | None:
    """(earliest first day, latest last day) of the stale ranges not rebuilt yet that
    start before `before`; None when there are none."""
    if not lake.exists(TABLE):
        return None
    got = (
        lake.read(TABLE)
        .where(F.col("rebuilt_at").isNull() & (F.col("first_day") < F.lit(before)))
        .agg(F.min("first_day").alias("first"), F.max("last_day").alias("last"))
        .first()
    )
    return None if got["first"] is None else (got["first"], got["last"])


def mark_rebuilt(lake: Lakehouse, first: dt.date, last: dt.date) -> None:
    """Stamp the pending ranges that first..last covers as rebuilt now."""
    if not lake.exists(TABLE):
        return
    covered = (
        F.col("rebuilt_at").isNull()
        & (F.col("first_day") >= F.lit(first))
        & (F.col("first_day") <= F.lit(last))
    )
    lake.update_rows(TABLE, covered, {"rebuilt_at": F.lit(_now())})


def rebuilt_since(lake: Lakehouse, since: dt.datetime, before: dt.date) -> dt.date | None:
    """The earliest day before `before` rebuilt after `since` (a model's training time,
    UTC), or None."""
    if not lake.exists(TABLE):
        return None
    return (
        lake.read(TABLE)
        .where((F.col("rebuilt_at") > F.lit(since)) & (F.col("first_day") < F.lit(before)))
        .agg(F.min("first_day"))
        .first()[0]
    )
