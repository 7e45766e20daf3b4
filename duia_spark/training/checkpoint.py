"""The trainer's files: the resumable checkpoint, warm-start weights, and the results.

The checkpoint (rank 0, after every epoch) holds the model, the optimizer, every
random generator's state and the trainer's selection state, so `--resume` continues
exactly where a stopped run left off. The results (rank 0, at the end) are the kept
weights, the cluster memories, the history and the config.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from duia_spark.model.ranker import DuiaRanker

CHECKPOINT = "checkpoint.pt"
OPTIMIZER_STATE = "optimizer.pt"  # the kept epoch's optimizer state, for the next night


def save_checkpoint(path: Path, model, optimizer, epoch: int, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            **state,
        },
        tmp,
    )
    os.replace(tmp, path)  # atomic: a kill mid-save keeps the previous checkpoint


def restore_random_state(checkpoint: dict) -> None:
    """The torch, numpy and Python generators as `save_checkpoint` found them."""
    torch.set_rng_state(checkpoint["torch_rng"])
    np.random.set_state(checkpoint["numpy_rng"])
    random.setstate(checkpoint["python_rng"])


def overlap_state(own: dict, saved: dict) -> dict:
    """Warm-start weights: copy what fits; embedding tables copy their overlapping rows
    (the vocabulary only grows, so old ids keep their rows)."""
    out = {}
    for k, v in saved.items():
        if k not in own or not _fits(own[k], v):
            continue
        if own[k].shape == v.shape:
            out[k] = v
        else:
            merged = own[k].clone()
            n = min(own[k].shape[0], v.shape[0])
            merged[:n] = v[:n]
            out[k] = merged
    return out


def weights_left_unfilled(own: dict, saved: dict) -> list[str]:
    """The entries of a model's state that `overlap_state` cannot fill from saved weights:
    missing there, or of another shape (embedding tables that only grew excepted). Empty
    when the saved weights continue this model whole; otherwise they are another
    architecture's, and a night continuing from them would train those entries from
    their initial values on one day."""
    return [k for k, v in own.items() if k not in saved or not _fits(v, saved[k])]


def _fits(own, saved) -> bool:
    """Saved weights continue an entry of this shape: the same shape, or a table whose rows
    grew (the vocabulary only grows; old ids keep their rows)."""
    if saved.shape == own.shape:
        return True
    return own.dim() == 2 and saved.dim() == 2 and saved.shape[1] == own.shape[1]


def cpu_copy(state):
    """A deep copy of a (nested) state with every tensor on the CPU."""
    if torch.is_tensor(state):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: cpu_copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [cpu_copy(v) for v in state]
    return state


def overlap_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> dict | None:
    """A saved optimizer state fitted to `optimizer`: the per-parameter moments of grown
    embedding tables keep their old rows (new rows start at zero, as a fresh optimizer's
    would); this optimizer's own settings (learning rates) are kept. None when the
    parameter lists differ (another model shape)."""
    own = optimizer.state_dict()
    sizes = [len(g["params"]) for g in own["param_groups"]]
    if sizes != [len(g["params"]) for g in saved["param_groups"]]:
        return None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for idx, entry in saved["state"].items():
        target = params[int(idx)]
        fitted = {}
        for key, value in entry.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != target.shape:
                if value.dim() != 2 or value.shape[1] != target.shape[1]:
                    return None
                grown = torch.zeros_like(target)
                n = min(value.shape[0], target.shape[0])
                grown[:n] = value[:n]
                value = grown
            fitted[key] = value
        state[int(idx)] = fitted
    return {"state": state, "param_groups": own["param_groups"]}


def write_results(
    out: Path,
    model: DuiaRanker,
    history,
    stopped_early: bool,
    residual_gate: dict[str, float],
    served_validation: dict[str, float],
    optimizer_state: dict | None = None,
) -> None:
    """The model as it stands (the kept weights), its memories, history and config, and
    the optimizer's state when the kept weights were kept (the next night continues it)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    if optimizer_state is not None:
        torch.save(optimizer_state, out / OPTIMIZER_STATE)
    model.save_memory(out / "cluster_memory.safetensors")
    summary = {"history": history, "stopped_early": stopped_early}
    if residual_gate:
        summary["residual_gate"] = residual_gate
        summary["served_validation"] = served_validation
    (out / "history.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "model_config.json").write_text(json.dumps(model.cfg.to_dict(), indent=1))
    (out / "_SUCCESS").write_text("ok\n")
