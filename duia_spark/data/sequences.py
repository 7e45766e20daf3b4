"""Point-in-time behaviour sequences: each user's last N exposures / positives / negatives.

A snapshot `as_of` D holds, per user, the most recent items of events with
event_date < D (most recent first; ties broken by item_id), so nothing from day D
can leak into samples of day D.

Two ways to build the same snapshot:
- `build_user_sequences(events, D, cfg)` — from all history (the full rebuild);
- `advance_user_sequences(snapshot_of_D_minus_1, events_of_D_minus_1, D, cfg)` —
  yesterday's snapshot plus one day of events: the day's own top N per user, joined to
  yesterday's lists by user and merged array to array (both already ranked), the top N
  kept. Yesterday's lists are never exploded into rows or ranked again, so the night
  shuffles the snapshot once, as it is, and ranks only the day's events.
They agree exactly because the top N of (A ∪ B) equals the top N of (top N of A ∪ top N of B).

Skew-safe: lists are ranked with `row_number() <= N` per (user, list) (Spark turns
this into a per-partition group limit before the shuffle) and only the bounded
top-N rows are collected; there is no unbounded collect_list.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import SequenceConfig
from duia_spark.data.activity import check_signals
from duia_spark.data.schema import SIGNALS

# One behaviour in a list; exposures also carry every signal flag (null → 0).
_BEHAVIOUR_FIELDS = [
    T.StructField("item_id", T.StringType(), True),
    T.StructField("event_ts", T.TimestampType(), True),
]
EXPOSURE_TYPE = T.StructType(
    [*_BEHAVIOUR_FIELDS, *[T.StructField(s, T.IntegerType(), True) for s in SIGNALS]]
)
BEHAVIOUR_TYPE = T.StructType(_BEHAVIOUR_FIELDS)

# list column → (element type, config field with its length)
LISTS: dict[str, tuple[T.StructType, str]] = {
    "exposures": (EXPOSURE_TYPE, "exposures_len"),
    "positives": (BEHAVIOUR_TYPE, "positives_len"),
    "negatives": (BEHAVIOUR_TYPE, "negatives_len"),
}

USER_SEQUENCES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        *[T.StructField(name, T.ArrayType(tp, False), False) for name, (tp, _) in LISTS.items()],
        T.StructField("as_of_date", T.DateType(), False),
    ]
)


def _any_signal(signals: list[str]) -> Column:
    if not signals:
        return F.lit(False)
    return reduce(lambda a, b: a | b, [F.coalesce(F.col(s), F.lit(0)) == 1 for s in signals])


def _list_lengths(cfg: SequenceConfig) -> dict[str, int]:
    return {name: getattr(cfg, key) for name, (_, key) in LISTS.items()}


def _event_rows(events: DataFrame, cfg: SequenceConfig) -> DataFrame:
    """Events as (user_id, list, item_id, event_ts, <signals>) rows, one per list they join."""
    check_signals(cfg.positive_signals, "sequences.positive_signals")
    check_signals(cfg.negative_signals, "sequences.negative_signals")
    base = events.select(
        "user_id",
        "item_id",
        "event_ts",
        *[F.coalesce(F.col(s), F.lit(0)).cast("int").alias(s) for s in SIGNALS],
        _any_signal(cfg.positive_signals).alias("_pos"),
        _any_signal(cfg.negative_signals).alias("_neg"),
    )
    cols = ["user_id", "list", "item_id", "event_ts", *SIGNALS]
    return (
        base.withColumn("list", F.lit("exposures"))
        .select(cols)
        .unionByName(base.where("_pos").withColumn("list", F.lit("positives")).select(cols))
        .unionByName(base.where("_neg").withColumn("list", F.lit("negatives")).select(cols))
    )


def _top_n_lists(rows: DataFrame, as_of: dt.date, cfg: SequenceConfig) -> DataFrame:
    """Keep the N most recent rows per (user, list) and fold them into bounded arrays."""
    lengths = _list_lengths(cfg)
    limit = F.create_map(*[x for k, v in lengths.items() for x in (F.lit(k), F.lit(v))])
    w = Window.partitionBy("user_id", "list").orderBy(F.col("event_ts").desc(), F.col("item_id"))
    ranked = rows.withColumn("_rank", F.row_number().over(w)).where(
        F.col("_rank") <= limit[F.col("list")]
    )
    aggs = []
    for name, (tp, _) in LISTS.items():
        fields = [F.col(f.name) for f in tp.fields]
        collected = F.collect_list(
            F.when(F.col("list") == name, F.struct(F.col("_rank"), F.struct(*fields).alias("v")))
        )
        # Sorting by the leading rank field puts the most recent first; then drop the rank.
        aggs.append(F.transform(F.array_sort(collected), lambda x: x["v"]).alias(name))
    out = ranked.groupBy("user_id").agg(*aggs)
    return out.select("user_id", *LISTS, F.lit(as_of).alias("as_of_date"))


def build_user_sequences(events: DataFrame, as_of: dt.date, cfg: SequenceConfig) -> DataFrame:
    """Snapshot as of the start of `as_of` from all history (events with event_date < as_of)."""
    history = events.where(F.col("event_date") < F.lit(as_of))
    return _top_n_lists(_event_rows(history, cfg), as_of, cfg)


def _most_recent_first(a: Column, b: Column) -> Column:
    """array_sort comparator: later event_ts first, then item_id ascending (as the ranking)."""
    return (
        F.when(a["event_ts"] > b["event_ts"], -1)
        .when(a["event_ts"] < b["event_ts"], 1)
        .when(a["item_id"] < b["item_id"], -1)
        .when(a["item_id"] > b["item_id"], 1)
        .otherwise(0)
    )


def merge_ranked_lists(newer: Column, older: Column, n: int) -> Column:
    """The top n of two lists, each most recent first.

    On a night the newer list holds one day's events and the older one the days before
    it, so every newer element is strictly later than every older one: newer ++ older is
    already ranked and is cut at n as it is. Only when their times overlap (or touch,
    where the item id breaks the tie) are the two sorted together; the lists are bounded
    (at most 2n elements), but the sort's comparator is interpreted row by row, so it is
    kept for the case that needs it.
    """
    both = F.concat(newer, older)
    in_order = (
        (F.size(newer) == 0)
        | (F.size(older) == 0)
        | (
            F.try_element_at(newer, F.lit(-1))["event_ts"]
            > F.try_element_at(older, F.lit(1))["event_ts"]
        )
    )
    return F.slice(
        F.when(in_order, both).otherwise(F.array_sort(both, _most_recent_first)),
        1,
        n,
    )


def advance_user_sequences(
    previous: DataFrame, day_events: DataFrame, as_of: dt.date, cfg: SequenceConfig
) -> DataFrame:
    """Snapshot as of `as_of` from the snapshot as of `as_of - 1` and that day's events.

    Users without events that day keep their lists unchanged (copied, not re-ranked).
    """
    day = as_of - dt.timedelta(days=1)
    new = day_events.where(F.col("event_date") == F.lit(day))
    today = _top_n_lists(_event_rows(new, cfg), as_of, cfg).select(
        "user_id", *[F.col(name).alias(f"_new_{name}") for name in LISTS]
    )
    joined = previous.select("user_id", *LISTS).join(today, "user_id", "full_outer")
    lengths = _list_lengths(cfg)
    merged = []
    for name, (tp, _) in LISTS.items():
        old = F.coalesce(F.col(name), F.array().cast(T.ArrayType(tp, False)))
        merged.append(
            F.when(F.col(f"_new_{name}").isNull(), old)
            .otherwise(merge_ranked_lists(F.col(f"_new_{name}"), old, lengths[name]))
            .alias(name)
        )
    return joined.select("user_id", *merged, F.lit(as_of).alias("as_of_date"))
