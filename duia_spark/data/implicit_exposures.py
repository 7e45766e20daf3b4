"""Unrated exposures for rating logs: every logged row is a consumption, so a "was it
consumed?" task needs rows that were shown but not consumed.

For each logged event, `per_event` items are drawn from the events *of the same day*
(so an item is drawn in proportion to how often it was consumed that day — popular
items of the moment, not uniform noise and never an item that was not around yet).
A draw the user consumed at any time in `events` (the rows being ingested: with
`--date`/`--end-date`, that range only) is dropped, as are repeated draws;
`DRAWS_PER_EXPOSURE` candidates are drawn per wanted exposure and the first survivors
kept, so a day dominated by one heavy user still yields its exposures.
The drawn row copies the source event's user, time and day, takes the drawn item,
has click = 0 and every other signal null (unknown: the user never saw it in the log,
so whether they would have liked it is not in the data). Deterministic for a seed.
Pure DataFrame → DataFrame; the input must have EVENTS_SCHEMA's columns.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from duia_spark.data.schema import DURATIONS, EVENT_KEY, SIGNALS

IMPLICIT_SOURCE_SUFFIX = "#unrated"
DRAWS_PER_EXPOSURE = 4


def sample_unrated_exposures(events: DataFrame, per_event: int, seed: int) -> DataFrame:
    """The sampled unrated exposures only (same columns as `events`)."""
    if per_event <= 0:
        return events.limit(0)
    # Rows of each day numbered 0..n_day-1 in a stable order: the draw targets.
    day = Window.partitionBy("event_date")
    numbered = events.withColumn("_n", F.count(F.lit(1)).over(day)).withColumn(
        "_slot", F.row_number().over(day.orderBy("item_id", "user_id", "event_ts")) - 1
    )
    ranked = numbered.select("event_date", "item_id", "_slot")
    # One draw per (event, j): a hash of the event key, j and the seed → a slot of its day.
    draws = (
        numbered.drop("_slot")
        .withColumn("_j", F.explode(F.sequence(F.lit(1), F.lit(per_event * DRAWS_PER_EXPOSURE))))
        .withColumn(
            "_slot",
            F.pmod(
                F.xxhash64("user_id", "item_id", "event_ts", "_j", F.lit(seed)),
                F.col("_n"),
            ),
        )
        .withColumnRenamed("item_id", "_source_item")
        .drop("_n")
    )
    drawn = draws.join(ranked, ["event_date", "_slot"]).drop("_slot")
    consumed = events.select("user_id", "item_id").distinct()
    unrated = drawn.join(consumed, ["user_id", "item_id"], "left_anti")
    source = ["user_id", "_source_item", "event_ts"]
    unrated = _first(unrated, [*source, "item_id"], ["_j"], 1)  # a repeated draw counts once
    unrated = _first(unrated, source, ["_j"], per_event)  # the first survivors per rating
    unrated = _first(unrated, list(EVENT_KEY), ["_source_item", "_j"], 1)  # one row per key
    unrated = unrated.drop("_source_item", "_j")
    return unrated.select(
        *[
            F.lit(0).cast("int").alias(c)
            if c == "click"
            else F.lit(None).cast("int").alias(c)
            if c in SIGNALS
            else F.lit(None).cast("long").alias(c)
            if c in DURATIONS
            else F.concat(F.col(c), F.lit(IMPLICIT_SOURCE_SUFFIX)).alias(c)
            if c == "source_file"
            else F.col(c)
            for c in events.columns
        ]
    )


def _first(df: DataFrame, key: list[str], order: list[str], n: int) -> DataFrame:
    w = Window.partitionBy(*key).orderBy(*order)
    return df.withColumn("_k", F.row_number().over(w)).where(F.col("_k") <= n).drop("_k")
