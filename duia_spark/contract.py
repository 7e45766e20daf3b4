"""The contract between the samples, the model, training, scoring and evaluation: the
columns a model reads and the batch they become, the label columns of a task, the
activity segment ids, the score columns, and the names of a model's files.

Every layer imports these names from here, so each is said once."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from duia_spark.model.config import SEGMENT_IDS, ModelConfig

__all__ = [
    "ARRAY_COLUMNS",
    "ARTIFACT_CONFIG",
    "ARTIFACT_MEMORY",
    "ARTIFACT_WEIGHTS",
    "ID_COLUMNS",
    "MODEL_FILES",
    "SEGMENT_IDS",
    "SIDE_COLUMN",
    "available_input_columns",
    "input_columns",
    "label_column",
    "pandas_to_columns",
    "side_by_side_column",
    "task_score_column",
    "to_batch",
]

# A model's files, by their artifact keys in the logged pyfunc model: the network's
# weights, the cluster memories, and the ModelConfig that rebuilds the network.
ARTIFACT_WEIGHTS = "weights"
ARTIFACT_MEMORY = "cluster_memory"
ARTIFACT_CONFIG = "model_config"
MODEL_FILES = (ARTIFACT_WEIGHTS, ARTIFACT_MEMORY, ARTIFACT_CONFIG)

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


def task_score_column(task: str) -> str:
    """Score column of a task in the scored frame (gold.scores' per-task scores)."""
    return f"score_{task}"


def side_by_side_column(model: str, task: str) -> str:
    """Score column of one model among several scored side by side (evaluation)."""
    return f"{model}::{task}"


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
