"""The per-rank training function TorchDistributor runs: DDP over Petastorm shards.

`train_rank` sets up this process (rank, device, process group, seeds) and hands over
to `Trainer` (trainer.py), which warm-starts or resumes the model, trains the epochs,
keeps the best and writes the results.

Memory consistency across ranks (GHCA): DDP all-reduces every gradient, centres
included, so gradient updates agree; DDP broadcasts buffers (usage counters, recent
queries, UPBE slots' bookkeeping) from rank 0 before each forward; re-seeding of dead
centres writes parameters in place and then broadcasts rank 0's centres. Rank 0 is the
authority; `memory_checksum` (trainer.py) lets a test see that ranks agree.

Only rank 0 writes results (TorchDistributor in local mode returns every rank's value,
so results go to `out_dir`, not through the return value).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from duia_spark.config import TrainConfig
from duia_spark.model.config import ModelConfig
from duia_spark.training.trainer import ModelWithLoss, Trainer

# The training step as one module (bench/train.py times it under this name).
_WithLoss = ModelWithLoss


@dataclass
class TrainJob:
    """Everything one rank needs; pickled into each TorchDistributor process."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    train_data: object  # SparkDatasetConverter (or anything with make_torch_dataloader)
    val_data: object
    train_rows: int
    val_rows: int
    out_dir: str
    checkpoint_dir: str
    resume: bool = False
    warm_memory: str | None = None
    warm_weights: str | None = None
    warm_optimizer: str | None = None  # the earlier model's optimizer state (incremental)
    validate_start: bool = False  # the warm-started model is epoch 0's candidate (incremental)


def train_rank(job: TrainJob) -> None:
    """Entry point of one training process (called by TorchDistributor or directly)."""
    rank, world, device = start_process(job.train_cfg)
    _seed_everything(job.model_cfg.seed)
    finished = Trainer(job, rank, world, device).fit()
    if world > 1:
        if finished:  # a time-boxed run leaves without waiting for rank 0's results
            dist.barrier()
        dist.destroy_process_group()


def start_process(tc: TrainConfig) -> tuple[int, int, torch.device]:
    """-> (rank, world size, device); joins the process group when there are several."""
    rank, world = _rank_world()
    device = pick_device(tc.use_gpu)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rank == 0:
        group = f"process group {dist.get_backend()}" if distributed else "no process group"
        print(f"[train] {world} process(es) on {device.type}, {group}", flush=True)
    return rank, world, device


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def wants_gpu(use_gpu: bool | str) -> bool:
    """train.use_gpu: true, false or "auto" (whatever this machine has)."""
    if isinstance(use_gpu, bool):
        return use_gpu
    if use_gpu.lower() != "auto":
        raise ValueError(f"train.use_gpu: expected true, false or auto, got {use_gpu!r}")
    return torch.cuda.is_available()


def pick_device(use_gpu: bool | str) -> torch.device:
    want = wants_gpu(use_gpu)
    if want and not torch.cuda.is_available():
        raise RuntimeError("train.use_gpu=true but no CUDA device is visible")
    if want:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
