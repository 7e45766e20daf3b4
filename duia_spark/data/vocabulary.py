"""Stable contiguous indices for ids: silver.vocabulary (kind, id, idx, first_seen_date).

Index 0 is reserved for padding / unknown; real ids start at 1. The table only grows:
`assign_new_indices` gives ids not yet in the vocabulary the indices after the current
maximum of their kind, in id order, so a re-run assigns the same indices and an id keeps
its index across nights. Pure DataFrame → DataFrame.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

VOCAB_KINDS: tuple[str, ...] = ("user", "item", "category", "author")
VOCAB_KEYS: list[str] = ["kind", "id"]

VOCABULARY_SCHEMA = T.StructType(
    [
        T.StructField("kind", T.StringType(), False),
        T.StructField("id", T.StringType(), False),
        T.StructField("idx", T.IntegerType(), False),
        T.StructField("first_seen_date", T.DateType(), False),
    ]
)


def vocabulary_candidates(kind: str, ids: DataFrame) -> DataFrame:
    """(kind, id) rows from a one-column frame of ids; nulls and blanks dropped."""
    return vocabulary_candidates_by_column(ids, {kind: ids.columns[0]})


def vocabulary_candidates_by_column(rows: DataFrame, columns: dict[str, str]) -> DataFrame:
    """(kind, id) rows from several id columns of one frame ({kind: column}), in one pass
    over it: a frame that is costly to compute is not computed once per kind. Nulls and
    blanks dropped."""
    unknown = [k for k in columns if k not in VOCAB_KINDS]
    if unknown:
        raise ValueError(f"unknown vocabulary kind {unknown[0]!r}; known: {VOCAB_KINDS}")
    pairs = [
        F.struct(F.lit(kind).alias("kind"), F.col(col).cast("string").alias("id"))
        for kind, col in columns.items()
    ]
    one = pairs[0] if len(pairs) == 1 else F.explode(F.array(*pairs))
    return (
        rows.select(one.alias("_c"))
        .select("_c.kind", "_c.id")
        .where(F.col("id").isNotNull() & (F.trim("id") != ""))
    )


def assign_new_indices(candidates: DataFrame, vocabulary: DataFrame, seen_on: dt.date) -> DataFrame:
    """Vocabulary rows for the candidate ids the vocabulary does not hold yet."""
    new = candidates.distinct().join(vocabulary.select(*VOCAB_KEYS), VOCAB_KEYS, "left_anti")
    top = vocabulary.groupBy("kind").agg(F.max("idx").alias("_max"))
    w = Window.partitionBy("kind").orderBy("id")
    return new.join(top, "kind", "left").select(
        "kind",
        "id",
        (F.coalesce(F.col("_max"), F.lit(0)) + F.row_number().over(w)).cast("int").alias("idx"),
        F.lit(seen_on).alias("first_seen_date"),
    )


def index_lookup(vocabulary: DataFrame, kind: str, id_col: str, idx_col: str) -> DataFrame:
    """(id_col, idx_col) pairs of one kind, for joining onto a frame of ids."""
    return vocabulary.where(F.col("kind") == kind).select(
        F.col("id").alias(id_col), F.col("idx").alias(idx_col)
    )
