"""A user's behaviour sequences as the samples' item-index arrays.

silver.user_sequences holds, per user and day, three lists of behaviours (most recent
first) with their times and signals. A sample needs only the items' vocabulary indices,
cut or zero-padded to the configured lengths, and how many of them are real.
Pure DataFrame → DataFrame.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from duia_spark.config import SequenceConfig
from duia_spark.data.sequences import LISTS
from duia_spark.data.vocabulary import index_lookup

# Sequence list → (samples column, its length's config field).
SEQUENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "exposures": ("hist_items", "exposures_len"),
    "positives": ("pos_items", "positives_len"),
    "negatives": ("neg_items", "negatives_len"),
}
# Samples column → the column counting its real (non-padding) entries.
LENGTH_COLUMNS: dict[str, str] = {
    "hist_items": "hist_len",
    "pos_items": "pos_len",
    "neg_items": "neg_len",
}


def list_item_ids(sequences: DataFrame) -> DataFrame:
    """(user_id, <list>...) with each list of the snapshot as its item ids only. Select
    them before joining the snapshot: Spark does not prune nested fields through a join,
    and the Parquet read would decode every element's time and signals as well."""
    return sequences.select("user_id", *[F.col(f"{name}.item_id").alias(name) for name in LISTS])


def _tagged_ids(list_code: int, name: str) -> Column:
    """A list's item ids (column `name`, an array of ids) as (list, pos, item_id) structs,
    pos counting from 0."""
    return F.transform(
        F.col(name),
        lambda item_id, pos: F.struct(
            F.lit(list_code).alias("list"), pos.alias("pos"), item_id.alias("item_id")
        ),
    )


def sequence_indices(
    sequences: DataFrame, users: DataFrame, vocabulary: DataFrame, cfg: SequenceConfig
) -> DataFrame:
    """Per user of the day: hist/pos/neg item indices, most recent first (uncut: see
    `padded_sequences`).

    The day's snapshot rows are read once and partitioned by user while still compact
    (one row per user); their ids are then exploded, looked up in the item vocabulary
    (Spark broadcasts it when it is small) and folded back per user without another
    shuffle: the exploded ids, many per user, never cross the network.
    """
    seq = list_item_ids(sequences).join(users, "user_id", "left_semi").repartition("user_id")
    every_list = F.concat(*[_tagged_ids(code, name) for code, name in enumerate(LISTS)])
    rows = seq.select("user_id", F.explode(every_list).alias("e")).select("user_id", "e.*")
    rows = rows.join(index_lookup(vocabulary, "item", "item_id", "idx"), "item_id", "left")
    aggs = [
        F.transform(
            F.array_sort(
                F.collect_list(
                    F.when(
                        F.col("list") == code,
                        F.struct("pos", F.coalesce("idx", F.lit(0)).alias("idx")),
                    )
                )
            ),
            lambda x: x["idx"],
        ).alias(SEQUENCE_COLUMNS[name][0])
        for code, name in enumerate(LISTS)
    ]
    return rows.groupBy("user_id").agg(*aggs)


def _pad(arr: Column, n: int) -> Column:
    """Exactly n ints: the first n of `arr`, then zeros."""
    padded = F.concat(arr, F.array_repeat(F.lit(0), F.greatest(F.lit(0), F.lit(n) - F.size(arr))))
    return F.slice(padded, 1, n)


def padded_sequences(cfg: SequenceConfig) -> list[Column]:
    """`sequence_indices`' columns cut or zero-padded to their configured lengths (a user
    without a snapshot row gets zeros), then hist_len, pos_len and neg_len."""
    lists = {
        col: (F.coalesce(F.col(col), F.array().cast("array<int>")), getattr(cfg, key))
        for col, key in SEQUENCE_COLUMNS.values()
    }
    return [
        *[_pad(ids, n).alias(col) for col, (ids, n) in lists.items()],
        *[
            F.least(F.size(ids), F.lit(n)).alias(LENGTH_COLUMNS[col])
            for col, (ids, n) in lists.items()
        ],
    ]
