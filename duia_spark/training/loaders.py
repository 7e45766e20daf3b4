"""Batches for the trainer: Petastorm loaders over a rank's shard, and whole passes over
the validation set."""

from __future__ import annotations

import functools

import numpy as np
import torch

from duia_spark.contract import to_batch
from duia_spark.model.config import ModelConfig
from duia_spark.model.ranker import DuiaRanker
from duia_spark.training.metrics import ScoredRows


def column_tensor(values) -> torch.Tensor:
    """One column of a Petastorm row-group batch → a tensor. Array columns arrive as an
    object array of per-row arrays and are stacked; scalar columns convert in place."""
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.stack(arr)
    return torch.as_tensor(arr)


def open_loader(data, rank: int, world: int, batch_size: int, seed: int, num_epochs=None):
    """Petastorm loader (a context manager) over this rank's shard of row groups.

    Sharded by the global RANK/WORLD_SIZE (not the node rank); one reader thread and a
    seeded row-group order make the batch order reproducible, which `--resume` needs.
    Petastorm's `BatchedDataLoader` slices whole row groups into batches as tensors
    (its default `DataLoader` would rebuild every batch row by row in Python); batches
    still run across row-group boundaries in the same order.
    """
    from petastorm.pytorch import BatchedDataLoader

    return data.make_torch_dataloader(
        batch_size=batch_size,
        num_epochs=num_epochs,
        cur_shard=rank,
        shard_count=world,
        workers_count=1,
        shuffle_row_groups=True,
        seed=seed,
        data_loader_fn=functools.partial(BatchedDataLoader, transform_fn=column_tensor),
    )


def validation_batches(data, cfg: ModelConfig, batch_size: int, device):
    """One pass over the whole validation set as model batches (one reader, no sharding)."""
    with open_loader(data, 0, 1, batch_size, seed=0, num_epochs=1) as loader:
        for cols in loader:
            yield to_batch(cols, device, cfg=cfg)


def predict_rows(model: DuiaRanker, data, cfg: ModelConfig, batch_size: int, device):
    """Predict the whole validation set (one reader, no sharding) -> ScoredRows, or None
    when it holds no row."""
    users, segments, labels, known, scores = [], [], [], [], []
    for batch in validation_batches(data, cfg, batch_size, device):
        scores.append(model.predict(batch).cpu().numpy())
        users.append(batch["user_idx"].cpu().numpy())
        segments.append(batch["segment"].cpu().numpy())
        labels.append(np.nan_to_num(batch["labels"].cpu().numpy()))
        known.append(~np.isnan(batch["labels"].cpu().numpy()))
    if not scores:
        return None
    return ScoredRows(
        np.concatenate(users),
        np.concatenate(segments),
        np.concatenate(labels),
        np.concatenate(scores),
        np.concatenate(known),
    )


def evaluate_rows(model: DuiaRanker, data, cfg: ModelConfig, batch_size: int, device) -> dict:
    """Predict the whole validation set and score it (a ranking report; {} if empty)."""
    rows = predict_rows(model, data, cfg, batch_size, device)
    return rows.report(cfg.tasks) if rows is not None else {}
