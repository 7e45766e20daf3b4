"""gold.samples rows → the model's batch dict; the columns training needs, checked early."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from duia_spark.contract import ID_COLUMNS, SIDE_COLUMN, input_columns, label_column
from duia_spark.model.config import ModelConfig


class MissingColumnError(ValueError):
    """The sample table lacks a column the model needs."""


def required_columns(cfg: ModelConfig, with_labels: bool = True) -> list[str]:
    cols = input_columns(cfg)
    if with_labels:
        for task in cfg.tasks:
            cols += list(label_column(task))
    return cols


def check_sample_columns(columns: list[str], cfg: ModelConfig, table: str = "gold.samples") -> None:
    """Fail before any work starts, naming every column the model needs and cannot find."""
    missing = [c for c in required_columns(cfg) if c not in columns]
    if missing:
        raise MissingColumnError(
            f"{table} is missing required column(s): {', '.join(missing)} "
            f"(needed by model tasks {cfg.tasks}); rebuild it with `duia samples`"
        )


def select_training_columns(samples: DataFrame, cfg: ModelConfig) -> DataFrame:
    """The flat, fixed-width frame Petastorm feeds to PyTorch: ids, float arrays, and
    `labels`/`labels_known` arrays in `cfg.tasks` order (NaN-free; unknown → known = 0)."""
    check_sample_columns(samples.columns, cfg)
    labels = [F.col(label_column(t)[0]).cast("float") for t in cfg.tasks]
    known = [F.col(label_column(t)[1]).cast("float") for t in cfg.tasks]
    return samples.select(
        *[F.col(c).cast("int").alias(c) for c in ID_COLUMNS],
        F.col("user_dense").cast("array<float>").alias("user_dense"),
        F.col("item_dense").cast("array<float>").alias("item_dense"),
        F.col("hist_items").cast("array<int>").alias("hist_items"),
        F.col("pos_items").cast("array<int>").alias("pos_items"),
        *(
            [F.col(SIDE_COLUMN).cast("array<int>").alias(SIDE_COLUMN)]
            if cfg.side_cat_buckets
            else []
        ),
        F.array(*labels).alias("labels"),
        F.array(*known).alias("labels_known"),
    )


def deterministic_layout(df: DataFrame, partitions: int) -> DataFrame:
    """Spread rows over `partitions` files in a pseudo-random but reproducible order.

    Petastorm reads row groups in a seeded order, so the batches are reproducible only if
    each file holds the same rows in the same order on every run — a plain
    `repartition(n)` depends on the input's partitioning. A hash of every column decides
    both the file and the position: well mixed for SGD, identical across runs.
    """
    key = F.xxhash64(*[F.col(c) for c in df.columns])
    return (
        df.withColumn("_order", key)
        .repartition(partitions, F.pmod(F.col("_order"), F.lit(partitions)))
        .sortWithinPartitions("_order")
        .drop("_order")
    )
