"""The per-rank training function TorchDistributor runs: DDP over Petastorm shards.

Memory consistency across ranks (GHCA): DDP all-reduces every gradient, centres
included, so gradient updates agree; DDP broadcasts buffers (usage counters, recent
queries, UPBE slots' bookkeeping) from rank 0 before each forward; re-seeding of dead
centres writes parameters in place and then broadcasts rank 0's centres. Rank 0 is the
authority; `memory_checksum` lets a test see that ranks agree.

Only rank 0 writes results (TorchDistributor in local mode returns every rank's value,
so results go to `out_dir`, not through the return value).
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from duia_spark.config import TrainConfig
from duia_spark.model.config import ModelConfig
from duia_spark.model.ranker import DuiaRanker, build_ranker
from duia_spark.training.dataset import to_batch
from duia_spark.training.metrics import ScoredRows, selection_value
from duia_spark.training.residual_gate import (
    base_ranker_only,
    gate_evidence,
    gate_residual_head,
    served_segments,
)
from duia_spark.training.weight_average import WeightAverage

CHECKPOINT = "checkpoint.pt"


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


class _WithLoss(torch.nn.Module):
    """Forward that returns the loss: DDP must see every parameter use — the clustering
    loss reads centres and embeddings again — inside one forward call."""

    def __init__(self, model: DuiaRanker):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return self.model.loss(batch, self.model(batch))


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


def memory_checksum(model: DuiaRanker) -> float:
    """A scalar fingerprint of the cluster centres and UPBE slots (the memory's parameters).

    Usage counters are buffers that each rank bumps locally during its forward pass and
    DDP overwrites with rank 0's at the next one, so they are rank 0's by construction.
    """
    return float(sum(p.detach().double().abs().sum() for p in model.centre_parameters()))


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


def validation_batches(data, cfg: ModelConfig, batch_size: int, device):
    """One pass over the whole validation set as model batches (one reader, no sharding)."""
    with open_loader(data, 0, 1, batch_size, seed=0, num_epochs=1) as loader:
        for cols in loader:
            yield to_batch(cols, device, cfg=cfg)


def evaluate_rows(model: DuiaRanker, data, cfg: ModelConfig, batch_size: int, device) -> dict:
    """Predict the whole validation set and score it (a ranking report; {} if empty)."""
    rows = predict_rows(model, data, cfg, batch_size, device)
    return rows.report(cfg.tasks) if rows is not None else {}


def _save_checkpoint(path: Path, model, optimizer, epoch: int, state: dict) -> None:
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


def train_rank(job: TrainJob) -> None:
    """Entry point of one training process (called by TorchDistributor or directly)."""
    rank, world = _rank_world()
    tc, cfg = job.train_cfg, job.model_cfg
    device = pick_device(tc.use_gpu)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rank == 0:
        group = f"process group {dist.get_backend()}" if distributed else "no process group"
        print(f"[train] {world} process(es) on {device.type}, {group}", flush=True)
    _seed_everything(cfg.seed)
    model = build_ranker(cfg, device)
    if job.warm_weights:
        state = torch.load(job.warm_weights, map_location=device)
        model.load_state_dict(_overlap_state(model.state_dict(), state), strict=False)
    if job.warm_memory:
        loaded = model.load_memory(job.warm_memory)
        if rank == 0:
            print(
                f"[train] warm start: cluster memories {loaded} from {job.warm_memory}", flush=True
            )
    optimizer = model.build_optimizer(tc.lr)
    ckpt_path = Path(job.checkpoint_dir) / CHECKPOINT
    start_epoch, history, best, best_state, bad_epochs = 0, [], -np.inf, None, 0
    average = WeightAverage(model) if tc.average_weights and rank == 0 else None
    if job.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_weights(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["torch_rng"])
        np.random.set_state(ck["numpy_rng"])
        random.setstate(ck["python_rng"])
        start_epoch, history = ck["epoch"] + 1, ck["history"]
        best, best_state, bad_epochs = ck["best"], ck["best_state"], ck["bad_epochs"]
        if average is not None and ck.get("weight_average"):
            average.restore(ck["weight_average"], device)
        if rank == 0:
            print(f"[train] resumed from {ckpt_path} after epoch {ck['epoch'] + 1}", flush=True)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            _WithLoss(model),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
        if distributed
        else _WithLoss(model)
    )
    steps = max(1, job.train_rows // (world * tc.batch_size))
    stopped_early = False
    for epoch in range(start_epoch, tc.epochs):
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        task_sums: dict[str, float] = {}
        with open_loader(
            job.train_data, rank, world, tc.batch_size, seed=cfg.seed + epoch
        ) as loader:
            it = iter(loader)
            for step in range(steps):  # a fixed count: uneven shards cannot deadlock DDP
                batch = to_batch(next(it), device, non_blocking=device.type == "cuda", cfg=cfg)
                loss, parts = ddp(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += batch["user_idx"].shape[0]
                loss_sum += float(loss.detach())
                for k, v in parts.items():
                    task_sums[k] = task_sums.get(k, 0.0) + float(v)
                if rank == 0 and (step + 1) % max(1, steps // 4) == 0:
                    print(
                        f"[train] epoch {epoch + 1}/{tc.epochs} step {step + 1}/{steps} "
                        f"loss {loss_sum / (step + 1):.4f}",
                        flush=True,
                    )
        elapsed = time.time() - t0
        if distributed:
            dist.barrier()
        spread = 0.0
        if distributed:  # every rank's memory fingerprint; rank 0 records the spread
            checks = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
            dist.all_gather(checks, torch.tensor([memory_checksum(model)], dtype=torch.float64))
            spread = max(float(c) for c in checks) - min(float(c) for c in checks)
        record = {
            "epoch": epoch + 1,
            "rank_memory_spread": spread,
            "loss": loss_sum / steps,
            "samples_per_s": seen * world / elapsed,
            **{f"loss/{k}": v / steps for k, v in task_sums.items()},
            **model.cluster_metrics(),
            "memory_checksum": memory_checksum(model),
        }
        if rank == 0:
            # Residual fusion: the base ranker is validated on its own (the head is judged
            # after training, per segment), so it keeps the epoch variant "ple" keeps.
            with base_ranker_only(model):
                record.update(evaluate_rows(model, job.val_data, cfg, tc.batch_size, device))
                metric = selection_value(record, tc.selection_metric)
                candidate = None  # None: the epoch's own weights
                if average is not None:
                    metric, candidate = _validate_average(
                        model, average, record, metric, job, cfg, tc, device
                    )
            improved = not np.isnan(metric) and metric > best
            if improved or best_state is None:
                best = metric if not np.isnan(metric) else best
                own = candidate if candidate is not None else model.state_dict()
                best_state = {k: v.detach().cpu().clone() for k, v in own.items()}
                bad_epochs = 0
            else:
                bad_epochs += 1
            print(
                f"[train] epoch {epoch + 1}/{tc.epochs} done: loss {record['loss']:.4f}, "
                f"{record['samples_per_s']:,.0f} samples/s, "
                f"val {tc.selection_metric} {metric:.4f}"
                + (f" (mean weights of epochs 1..{epoch + 1})" if candidate is not None else ""),
                flush=True,
            )
            history.append(record)
            Path(job.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            _save_checkpoint(
                ckpt_path,
                model,
                optimizer,
                epoch,
                {
                    "history": history,
                    "best": best,
                    "best_state": best_state,
                    "bad_epochs": bad_epochs,
                    "weight_average": average.checkpoint() if average is not None else None,
                },
            )
        stop = torch.tensor(
            [int(rank == 0 and bad_epochs >= tc.early_stopping_patience)], dtype=torch.long
        )
        if distributed:
            dist.broadcast(stop, src=0)
        epochs_this_run = epoch - start_epoch + 1
        if int(stop):
            stopped_early = True
            if rank == 0:
                print(
                    f"[train] early stop: no gain in {tc.early_stopping_patience} epochs",
                    flush=True,
                )
            break
        if (
            tc.stop_after_epochs
            and epochs_this_run >= tc.stop_after_epochs
            and epoch + 1 < tc.epochs
        ):
            if rank == 0:
                print(
                    f"[train] stopping after {epochs_this_run} epoch(s) as configured; resumable",
                    flush=True,
                )
            if distributed:
                dist.destroy_process_group()
            return
    if rank == 0:
        if best_state is not None:
            model.load_state_dict(best_state)
        gate, served = {}, {}
        if model.residual is not None and tc.residual_gate:
            gate, served = gate_residual_head(
                model,
                lambda: predict_rows(model, job.val_data, cfg, tc.batch_size, device),
                tc.selection_metric,
                tc.residual_gate_margin,
                tc.residual_gate_alpha,
            )
            kept = served_segments(gate)
            rule = (
                f"beat the base ranker on the validation rows by more than "
                f"{tc.residual_gate_margin} with its users' rows ranked better at p < "
                f"{tc.residual_gate_alpha}"
            )
            print(
                f"[train] residual gate: the head serves {', '.join(kept)} (it {rule} there);"
                f" other segments get the base ranker's score"
                if kept
                else f"[train] residual gate: the head serves no segment (it did not {rule}"
                f" in any); every row gets the base ranker's score",
                flush=True,
            )
            for line in gate_evidence(gate, tc.selection_metric):
                print(f"[train]   {line}", flush=True)
        _write_results(Path(job.out_dir), model, history, stopped_early, gate, served)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


def _validate_average(
    model: DuiaRanker, average: WeightAverage, record: dict, own_metric: float, job, cfg, tc, device
) -> tuple[float, dict | None]:
    """Add this epoch's weights to the running mean and validate the mean. When it
    validates better, the record's metrics become its metrics and its state is returned
    (the epoch's candidate); the model trains on from its own weights either way."""
    average.update(model)
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    averaged = average.state_dict(model)
    model.load_state_dict(averaged)
    try:
        scores = evaluate_rows(model, job.val_data, cfg, tc.batch_size, device)
    finally:
        model.load_state_dict(own)
    metric = selection_value(scores, tc.selection_metric)
    record["selection/epoch_weights"] = own_metric
    record["selection/averaged_weights"] = metric
    record["averaged_epochs"] = float(average.count)
    if np.isnan(metric) or (not np.isnan(own_metric) and metric <= own_metric):
        record["kept_averaged_weights"] = 0.0
        return own_metric, None
    record.update(scores)
    record["kept_averaged_weights"] = 1.0
    return metric, averaged


def _overlap_state(own: dict, saved: dict) -> dict:
    """Warm-start weights: copy what fits; embedding tables copy their overlapping rows
    (the vocabulary only grows, so old ids keep their rows)."""
    out = {}
    for k, v in saved.items():
        if k not in own:
            continue
        if own[k].shape == v.shape:
            out[k] = v
        elif own[k].dim() == 2 and own[k].shape[1] == v.shape[1]:
            merged = own[k].clone()
            n = min(own[k].shape[0], v.shape[0])
            merged[:n] = v[:n]
            out[k] = merged
    return out


def _write_results(
    out: Path,
    model: DuiaRanker,
    history,
    stopped_early: bool,
    residual_gate: dict[str, float],
    served_validation: dict[str, float],
) -> None:
    """The model as it stands (the kept weights), its memories, history and config."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    model.save_memory(out / "cluster_memory.safetensors")
    summary = {"history": history, "stopped_early": stopped_early}
    if residual_gate:
        summary["residual_gate"] = residual_gate
        summary["served_validation"] = served_validation
    (out / "history.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "model_config.json").write_text(json.dumps(model.cfg.to_dict(), indent=1))
    (out / "_SUCCESS").write_text("ok\n")
