"""One rank's training run, in steps: `Trainer.fit` runs the epochs, each
`train_one_epoch` then (rank 0) `evaluate`, `keep_if_better` and `save_checkpoint`;
`early_stop` and `time_boxed` end the loop; `finish` loads the kept weights, gates
the residual head and writes the results.

Selection: each epoch is validated on the selection metric (residual fusion: on the
base ranker alone, so it keeps the epoch variant "ple" keeps); with weight averaging
the running mean of the epochs' weights is validated beside them and kept when it
validates better. The best so far is held on CPU; `early_stopping_patience` epochs
without a gain stop the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from duia_spark.contract import to_batch
from duia_spark.model.ranker import DuiaRanker, build_ranker
from duia_spark.training.checkpoint import (
    CHECKPOINT,
    cpu_copy,
    overlap_optimizer_state,
    overlap_state,
    restore_random_state,
    save_checkpoint,
    write_results,
)
from duia_spark.training.loaders import evaluate_rows, open_loader, predict_rows
from duia_spark.training.metrics import selection_value
from duia_spark.training.residual_gate import (
    base_ranker_only,
    gate_evidence,
    gate_residual_head,
    served_segments,
)
from duia_spark.training.weight_average import WeightAverage

if TYPE_CHECKING:
    from duia_spark.training.loop import TrainJob


class ModelWithLoss(torch.nn.Module):
    """Forward that returns the loss: DDP must see every parameter use — the clustering
    loss reads centres and embeddings again — inside one forward call."""

    def __init__(self, model: DuiaRanker):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return self.model.loss(batch, self.model(batch))


def memory_checksum(model: DuiaRanker) -> float:
    """A scalar fingerprint of the cluster centres and UPBE slots (the memory's parameters).

    Usage counters are buffers that each rank bumps locally during its forward pass and
    DDP overwrites with rank 0's at the next one, so they are rank 0's by construction.
    """
    return float(sum(p.detach().double().abs().sum() for p in model.centre_parameters()))


@dataclass
class Selection:
    """What selection has kept so far (rank 0; saved in the checkpoint)."""

    history: list[dict] = field(default_factory=list)  # one record per epoch
    best: float = -np.inf  # the kept weights' selection value
    best_state: dict | None = None  # the kept weights, on CPU
    best_optimizer: dict | None = None  # the optimizer's state when they were kept, on CPU
    bad_epochs: int = 0  # epochs since the last gain


@dataclass
class EpochTotals:
    """Sums over one epoch's training steps."""

    seen: int = 0
    loss: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Builds the model (warm-started or resumed) and trains it on this rank's shard."""

    def __init__(self, job: TrainJob, rank: int, world: int, device: torch.device) -> None:
        self.job, self.tc, self.cfg = job, job.train_cfg, job.model_cfg
        self.rank, self.world, self.device = rank, world, device
        self.distributed = world > 1
        self.model = build_ranker(self.cfg, device)
        self.warm_start()
        self.optimizer = self.model.build_optimizer(self.tc.lr)
        self.warm_start_optimizer()
        self.checkpoint_path = Path(job.checkpoint_dir) / CHECKPOINT
        self.start_epoch = 0
        self.selection = Selection()
        self.average = WeightAverage(self.model) if self.tc.average_weights and rank == 0 else None
        if job.resume and self.checkpoint_path.exists():
            self.resume()
        self.step_module = ModelWithLoss(self.model)
        if self.distributed:
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.step_module,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        # A fixed count of steps per epoch: uneven shards cannot deadlock DDP.
        self.steps = max(1, job.train_rows // (world * self.tc.batch_size))
        self.stopped_early = False

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(f"[train] {message}", flush=True)

    # ------------------------------------------------------------------ start
    def warm_start(self) -> None:
        """Yesterday's champion: its weights where they fit, its cluster memories."""
        job, model = self.job, self.model
        if job.warm_weights:
            state = torch.load(job.warm_weights, map_location=self.device)
            model.load_state_dict(overlap_state(model.state_dict(), state), strict=False)
        if job.warm_memory:
            loaded = model.load_memory(job.warm_memory)
            self.log(f"warm start: cluster memories {loaded} from {job.warm_memory}")

    def warm_start_optimizer(self) -> None:
        """An incremental night continues the earlier model's optimizer (Adam's moments):
        a fresh Adam's first steps are full-size in every coordinate and pull a trained
        model off what the older days taught it."""
        path = self.job.warm_optimizer
        if not path:
            return
        saved = torch.load(path, map_location=self.device, weights_only=False)
        fitted = overlap_optimizer_state(self.optimizer, saved)
        if fitted is None:
            self.log(f"optimizer state in {path} does not fit this model: a fresh optimizer")
            return
        self.optimizer.load_state_dict(fitted)
        self.log(f"warm start: optimizer state from {path}")

    def resume(self) -> None:
        """Continue a stopped run from its checkpoint, exactly where it left off."""
        ck = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.model.load_weights(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        restore_random_state(ck)
        self.start_epoch = ck["epoch"] + 1
        self.selection = Selection(
            history=ck["history"],
            best=ck["best"],
            best_state=ck["best_state"],
            best_optimizer=ck.get("best_optimizer"),
            bad_epochs=ck["bad_epochs"],
        )
        if self.average is not None and ck.get("weight_average"):
            self.average.restore(ck["weight_average"], self.device)
        self.log(f"resumed from {self.checkpoint_path} after epoch {ck['epoch'] + 1}")

    # ------------------------------------------------------------------ epochs
    def fit(self) -> bool:
        """Train the remaining epochs. -> False when stopped by `train.stop_after_epochs`
        (a later run resumes), True when done (rank 0 has written the results)."""
        if self.job.validate_start and self.start_epoch == 0 and self.rank == 0:
            self.validate_start()
        for epoch in range(self.start_epoch, self.tc.epochs):
            record = self.train_one_epoch(epoch)
            if self.rank == 0:
                metric, candidate = self.evaluate(record)
                self.keep_if_better(metric, candidate)
                self.log_epoch(epoch, record, metric, averaged=candidate is not None)
                self.selection.history.append(record)
                self.save_checkpoint(epoch)
            if self.early_stop():
                break
            if self.time_boxed(epoch):
                return False
        if self.rank == 0:
            self.finish()
        return True

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over this rank's shard -> the epoch's record (losses, speed, memories)."""
        self.model.train()
        t0, totals = time.time(), EpochTotals()
        seed = self.cfg.seed + epoch
        with open_loader(
            self.job.train_data, self.rank, self.world, self.tc.batch_size, seed
        ) as loader:
            it = iter(loader)
            for step in range(self.steps):
                on_gpu = self.device.type == "cuda"
                batch = to_batch(next(it), self.device, non_blocking=on_gpu, cfg=self.cfg)
                loss, parts = self.train_step(batch)
                totals.seen += batch["user_idx"].shape[0]
                totals.loss += float(loss.detach())
                for k, v in parts.items():
                    totals.parts[k] = totals.parts.get(k, 0.0) + float(v)
                if (step + 1) % max(1, self.steps // 4) == 0:
                    self.log(
                        f"epoch {epoch + 1}/{self.tc.epochs} step {step + 1}/{self.steps} "
                        f"loss {totals.loss / (step + 1):.4f}"
                    )
        elapsed = time.time() - t0
        if self.distributed:
            dist.barrier()
        return self.epoch_record(epoch, totals, elapsed)

    def train_step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, parts = self.step_module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, parts

    def epoch_record(self, epoch: int, totals: EpochTotals, elapsed: float) -> dict:
        steps, model = self.steps, self.model
        return {
            "epoch": epoch + 1,
            "rank_memory_spread": self.rank_memory_spread(),
            "loss": totals.loss / steps,
            "samples_per_s": totals.seen * self.world / elapsed,
            **{f"loss/{k}": v / steps for k, v in totals.parts.items()},
            **model.cluster_metrics(),
            "memory_checksum": memory_checksum(model),
        }

    def rank_memory_spread(self) -> float:
        """Max - min of every rank's memory fingerprint (0.0: the ranks agree)."""
        if not self.distributed:
            return 0.0
        checks = [torch.zeros(1, dtype=torch.float64) for _ in range(self.world)]
        own = torch.tensor([memory_checksum(self.model)], dtype=torch.float64)
        dist.all_gather(checks, own)
        return max(float(c) for c in checks) - min(float(c) for c in checks)

    # ------------------------------------------------------------------ selection (rank 0)
    def validate_start(self) -> None:
        """An incremental night: the model it starts from is the first candidate (epoch 0),
        kept unless an epoch validates better."""
        model, tc = self.model, self.tc
        with base_ranker_only(model):
            scores = evaluate_rows(model, self.job.val_data, self.cfg, tc.batch_size, self.device)
        record = {"epoch": 0, "loss": float("nan"), **scores}
        metric = selection_value(record, tc.selection_metric)
        self.keep_if_better(metric, None)
        self.selection.history.append(record)
        self.log(f"epoch 0 (the model it starts from): val {tc.selection_metric} {metric:.4f}")

    def evaluate(self, record: dict) -> tuple[float, dict | None]:
        """Validate the epoch, adding its metrics to `record`. -> (its selection value,
        the averaged weights' state when they validated better, else None)."""
        model, tc = self.model, self.tc
        # Residual fusion: the base ranker is validated on its own (the head is judged
        # after training, per segment), so it keeps the epoch variant "ple" keeps.
        with base_ranker_only(model):
            scores = evaluate_rows(model, self.job.val_data, self.cfg, tc.batch_size, self.device)
            record.update(scores)
            metric = selection_value(record, tc.selection_metric)
            if self.average is None:
                return metric, None
            return self.evaluate_average(record, metric)

    def evaluate_average(self, record: dict, own_metric: float) -> tuple[float, dict | None]:
        """Add this epoch's weights to the running mean and validate the mean. When it
        validates better, the record's metrics become its metrics and its state is returned
        (the epoch's candidate); the model trains on from its own weights either way."""
        model, tc = self.model, self.tc
        self.average.update(model)
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        averaged = self.average.state_dict(model)
        model.load_state_dict(averaged)
        try:
            scores = evaluate_rows(model, self.job.val_data, self.cfg, tc.batch_size, self.device)
        finally:
            model.load_state_dict(own)
        metric = selection_value(scores, tc.selection_metric)
        record["selection/epoch_weights"] = own_metric
        record["selection/averaged_weights"] = metric
        record["averaged_epochs"] = float(self.average.count)
        if np.isnan(metric) or (not np.isnan(own_metric) and metric <= own_metric):
            record["kept_averaged_weights"] = 0.0
            return own_metric, None
        record.update(scores)
        record["kept_averaged_weights"] = 1.0
        return metric, averaged

    def keep_if_better(self, metric: float, candidate: dict | None) -> None:
        """Keep the epoch's weights (or `candidate`) when `metric` beats the best so far,
        or when nothing is kept yet; else count an epoch without a gain."""
        s = self.selection
        improved = not np.isnan(metric) and metric > s.best
        if improved or s.best_state is None:
            s.best = metric if not np.isnan(metric) else s.best
            own = candidate if candidate is not None else self.model.state_dict()
            s.best_state = {k: v.detach().cpu().clone() for k, v in own.items()}
            s.best_optimizer = cpu_copy(self.optimizer.state_dict())
            s.bad_epochs = 0
        else:
            s.bad_epochs += 1

    def log_epoch(self, epoch: int, record: dict, metric: float, averaged: bool) -> None:
        self.log(
            f"epoch {epoch + 1}/{self.tc.epochs} done: loss {record['loss']:.4f}, "
            f"{record['samples_per_s']:,.0f} samples/s, "
            f"val {self.tc.selection_metric} {metric:.4f}"
            + (f" (mean weights of epochs 1..{epoch + 1})" if averaged else "")
        )

    def save_checkpoint(self, epoch: int) -> None:
        s = self.selection
        Path(self.job.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        state = {
            "history": s.history,
            "best": s.best,
            "best_state": s.best_state,
            "best_optimizer": s.best_optimizer,
            "bad_epochs": s.bad_epochs,
            "weight_average": self.average.checkpoint() if self.average is not None else None,
        }
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, epoch, state)

    # ------------------------------------------------------------------ stopping
    def early_stop(self) -> bool:
        """Rank 0's verdict, shared with every rank: `early_stopping_patience` epochs
        without a gain."""
        patience = self.tc.early_stopping_patience
        stop = torch.tensor(
            [int(self.rank == 0 and self.selection.bad_epochs >= patience)], dtype=torch.long
        )
        if self.distributed:
            dist.broadcast(stop, src=0)
        self.stopped_early = bool(int(stop))
        if self.stopped_early:
            self.log(f"early stop: no gain in {patience} epochs")
        return self.stopped_early

    def time_boxed(self, epoch: int) -> bool:
        """`train.stop_after_epochs` epochs ran in this run and more remain: stop here,
        resumable from the checkpoint."""
        done_here = epoch - self.start_epoch + 1
        limit = self.tc.stop_after_epochs
        if not (limit and done_here >= limit and epoch + 1 < self.tc.epochs):
            return False
        self.log(f"stopping after {done_here} epoch(s) as configured; resumable")
        return True

    # ------------------------------------------------------------------ the end (rank 0)
    def finish(self) -> None:
        """Load the kept weights, gate the residual head, write the results."""
        model = self.model
        if self.selection.best_state is not None:
            model.load_state_dict(self.selection.best_state)
        gate, served = {}, {}
        if model.residual is not None and self.tc.residual_gate:
            gate, served = self.gate_residual_head()
        history = self.selection.history
        write_results(
            Path(self.job.out_dir),
            model,
            history,
            self.stopped_early,
            gate,
            served,
            self.selection.best_optimizer,
        )

    def gate_residual_head(self) -> tuple[dict[str, float], dict[str, float]]:
        """Serve the residual head only in the segments where it beat the base ranker on
        the validation day (residual_gate.py); log where and why."""
        tc, model = self.tc, self.model
        gate, served = gate_residual_head(
            model,
            lambda: predict_rows(model, self.job.val_data, self.cfg, tc.batch_size, self.device),
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
        self.log(
            f"residual gate: the head serves {', '.join(kept)} (it {rule} there);"
            f" other segments get the base ranker's score"
            if kept
            else f"residual gate: the head serves no segment (it did not {rule}"
            f" in any); every row gets the base ranker's score"
        )
        for line in gate_evidence(gate, tc.selection_metric):
            self.log(f"  {line}")
        return gate, served
