"""gold.samples rows → the model's batch dict; the columns training needs, checked early."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from duia_spark.model.config import ModelConfig


class MissingColumnError(ValueError):
    """The sample table lacks a column the model needs."""


ID_COLUMNS = ("user_idx", "item_idx", "category_idx", "author_idx", "segment_idx")
ARRAY_COLUMNS = ("user_dense", "item_dense", "hist_items", "pos_items")
SIDE_COLUMN = "side_cat"  # read only by models whose config declares side features


def input_columns(cfg: ModelConfig) -> list[str]:
    """The gold.samples columns a model reads."""
    return [*ID_COLUMNS, *ARRAY_COLUMNS, *([SIDE_COLUMN] if cfg.side_cat_buckets else [])]


def available_input_columns(columns: list[str]) -> list[str]:
    """Every model input column a frame holds (any model's: side_cat where present)."""
    return [c for c in (*ID_COLUMNS, *ARRAY_COLUMNS, SIDE_COLUMN) if c in columns]


def label_column(task: str) -> tuple[str, str]:
    """(value column, known-flag column) of a task in gold.samples."""
    if task == "play_time":
        return "play_time_ms", "play_time_known"
    return task, f"{task}_known"


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


def to_batch(
    columns: Mapping[str, np.ndarray | torch.Tensor],
    device: torch.device | str = "cpu",
    non_blocking: bool = False,
    cfg: ModelConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Column arrays (from Petastorm, pandas or memory) → the ranker's batch contract.

    Unknown labels become NaN, which the ranker's loss masks out. With `cfg`, indices
    beyond the model's vocabularies (ids first seen after it was trained) become 0,
    the unknown index.
    """

    def t(name: str, dtype: torch.dtype) -> torch.Tensor:
        v = columns[name]
        v = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        return v.to(device=device, dtype=dtype, non_blocking=non_blocking)

    batch = {
        "user_idx": t("user_idx", torch.long),
        "item_idx": t("item_idx", torch.long),
        "category_idx": t("category_idx", torch.long),
        "author_idx": t("author_idx", torch.long),
        "segment": t("segment_idx", torch.long),
        "user_dense": t("user_dense", torch.float32),
        "item_dense": t("item_dense", torch.float32),
        "hist_items": t("hist_items", torch.long),
        "pos_items": t("pos_items", torch.long),
    }
    if SIDE_COLUMN in columns and (cfg is None or cfg.side_cat_buckets):
        batch[SIDE_COLUMN] = t(SIDE_COLUMN, torch.long)
    if cfg is not None:
        limits = {
            "user_idx": cfg.n_users,
            "item_idx": cfg.n_items,
            "hist_items": cfg.n_items,
            "pos_items": cfg.n_items,
            "category_idx": cfg.n_categories,
            "author_idx": cfg.n_authors,
        }
        for name, n in limits.items():
            v = batch[name]
            batch[name] = torch.where((v >= n) | (v < 0), torch.zeros_like(v), v)
    batch["hist_mask"] = batch["hist_items"] != 0
    batch["pos_mask"] = batch["pos_items"] != 0
    if "labels" in columns:
        labels = t("labels", torch.float32)
        if "labels_known" in columns:
            labels = torch.where(t("labels_known", torch.float32) > 0, labels, torch.nan)
        batch["labels"] = labels
    return batch


def pandas_to_columns(df) -> dict[str, np.ndarray]:
    """A pandas frame of training columns (arrays as object columns) → stacked arrays."""
    out: dict[str, np.ndarray] = {}
    for c in df.columns:
        v = df[c].to_numpy()
        if v.dtype == object:
            v = np.stack([np.asarray(x) for x in v]) if len(v) else np.zeros((0, 0))
        out[c] = v
    return out
