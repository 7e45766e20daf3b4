"""DuiaRanker: the base ranker (PLE) + the DUIA enhancement + (residual fusion) a head.

Batch contract (dict[str, Tensor], B rows):
    user_idx, item_idx, category_idx, author_idx  [B] long (0 = unknown)
    user_dense [B, n_user_dense], item_dense [B, n_item_dense]  float32
    side_cat [B, n_side] long: hash buckets of the source's categorical side features
        (user, item, context; 0 = missing); only when the config declares some
    segment [B] long (0 low, 1 mid, 2 high activity)
    hist_items [B, seq_len] long (0 = padding, most recent first), hist_mask [B, seq_len] bool
    pos_items [B, pos_seq_len] long, pos_mask [B, pos_seq_len] bool
    labels [B, n_tasks] float32 in ModelConfig.tasks order (absent at inference;
        NaN = signal unknown for that row, left out of that task's loss)

The parts, one file each:
    base.py         embeddings, target attention over the histories, PLE (variant "ple")
    enhancement.py  DUIA: UIE, UPBE, UHSE over the GHCA memories -> its vectors
    residual.py     the head that turns those vectors into a correction of the logits
    losses.py       task losses, the play-time target's scaling
With `enhancement_fusion: input` DUIA's vectors join PLE's input and its enhanced
sequence the history attention's keys; with `residual` (the default) PLE trains as
variant "ple" does and the head corrects its logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from duia_spark.model.base import BaseRanker
from duia_spark.model.config import SEGMENT_IDS, ModelConfig
from duia_spark.model.enhancement import DuiaEnhancement
from duia_spark.model.ghca import load_memories, save_memories
from duia_spark.model.losses import (
    TargetScale,
    task_loss,
    to_label_units,
    track_targets_,
    weighted_task_losses,
)
from duia_spark.model.optim import RankerOptimizer
from duia_spark.model.residual import EnhancementResidual


class DuiaRanker(BaseRanker):
    """PLE multi-task ranker with optional DUIA (UIE, UPBE, UHSE), per `cfg.variant`.

    The enhancement's parts are registered on the ranker itself, under their own names
    (`user_memory`, `query_tower`, `uie`, `upbe`, `item_memory`, `uhse`, `duia_proj`,
    `uhse_attention`; None where the variant has none), so the state dict's keys are
    the ones every saved model has; `self.duia` is the enhancement that uses them."""

    def __init__(
        self, cfg: ModelConfig, device: torch.device | str = "cpu", materialise: bool = True
    ) -> None:
        # Small modules are built on CPU from a private RNG stream, so the same seed
        # gives the same model on any device and the caller's RNG is left alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            super().__init__(cfg)
            self._build_ple_and_enhancement(cfg)
        self._register_task_buffers(cfg)
        # Module.to() cannot copy a meta tensor, so deferred tables are skipped here
        # and allocated by materialise() directly on the device.
        for child in self.children():
            if not any(p.is_meta for p in child.parameters()):
                child.to(device)
        for name, buffer in list(self.named_buffers(recurse=False)):  # the ranker's own
            setattr(self, name, buffer.to(device))
        if materialise:
            self.materialise(device)

    def _build_ple_and_enhancement(self, cfg: ModelConfig) -> None:
        """PLE, the DUIA enhancement and the residual head, in the order their parameters
        are drawn: residual fusion builds PLE first, from the same draws as variant "ple"
        (whose init it then equals); input fusion builds it last, over the base features
        and DUIA's vectors."""
        if cfg.use_residual:
            self.build_ple()
        duia = DuiaEnhancement(cfg, self.target_dim, cfg.use_residual) if cfg.use_uie else None
        self._duia = (duia,)  # a tuple: its parts are registered once, just below
        for name in DuiaEnhancement.PARTS:
            setattr(self, name, getattr(duia, name, None))
        self.residual: EnhancementResidual | None = None
        # False: the head's correction is left out everywhere (a switch, not state).
        self.residual_served = True
        if cfg.use_residual:
            n_tasks, n_segments = len(cfg.tasks), len(SEGMENT_IDS)
            self.residual = EnhancementResidual(
                duia.width, self.ple_input_dim, n_tasks, cfg.tower_hidden, n_segments
            )
        else:
            self.build_ple(duia.width if duia is not None else 0)

    def _register_task_buffers(self, cfg: ModelConfig) -> None:
        """Task weights, which tasks are regressions, the auxiliary click task, and the
        regression targets' running scale (losses.py; saved with the weights)."""
        n_tasks = len(cfg.tasks)
        self.regression = [cfg.is_regression(t) for t in cfg.tasks]
        binary = [t for t, r in zip(cfg.tasks, self.regression, strict=True) if not r]
        aux = cfg.aux_task if cfg.aux_task in binary else (binary[0] if binary else None)
        self.aux_task_index = None if aux is None else cfg.tasks.index(aux)
        weights = torch.tensor([cfg.task_weight(t) for t in cfg.tasks])
        self.register_buffer("task_weights", weights, persistent=False)
        self.register_buffer("target_mean", torch.zeros(n_tasks))
        self.register_buffer("target_std", torch.ones(n_tasks))
        self.register_buffer("target_tracked", torch.zeros(n_tasks, dtype=torch.bool))

    @property
    def duia(self) -> DuiaEnhancement | None:
        """The DUIA enhancement (None for variant "ple")."""
        return self._duia[0]

    def train(self, mode: bool = True) -> DuiaRanker:
        super().train(mode)  # the enhancement's parts are children of this model ...
        if self.duia is not None:
            self.duia.training = mode  # ... the enhancement itself is not
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> dict:
        """-> {"logits": [B, T], "aux": {...}}; residual fusion adds "base_logits" (the
        base ranker's) and "residual" (the head's correction): logits = base + residual."""
        segment = batch.get("segment")
        x = self.embed(batch)
        enhanced = self.duia(x, segment, self.item_emb) if self.duia is not None else None
        aux = enhanced.aux if enhanced is not None else {}
        if self.residual is None:  # variant "ple", or input fusion: DUIA feeds the base
            if enhanced is None:
                logits = self.rank(x)[1]
            else:
                logits = self.rank(x, enhanced.shared, enhanced.vector)[1]
            out = {"logits": logits, "aux": aux}
        else:  # the base ranks on its own; the head reads DUIA's vector
            features, logits = self.rank(x)
            residual = self.residual.correction(enhanced.vector, features, logits, segment)
            if not self.residual_served:  # the base ranker's own scores (base_ranker_only)
                residual = torch.zeros_like(residual)
            out = {"logits": logits + residual, "aux": aux, "base_logits": logits}
            out["residual"] = residual
        if self.training and enhanced is not None:
            self.duia.observe(aux, segment, batch.get("labels"))
        return out

    # ------------------------------------------------------------------ losses
    def loss(self, batch: dict[str, Tensor], out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """-> (total, {task: loss, "aux": ..., "clustering": ...}); logged values are detached."""
        total, parts = self.ranking_loss(batch, out)
        if self.duia is not None:
            clustering = self.clustering_loss(batch, out)
            parts["clustering"] = clustering
            total = total + clustering
        return total, {k: v.detach() for k, v in parts.items()}

    def ranking_loss(self, batch: dict[str, Tensor], out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted task losses + the query tower's auxiliary loss (all that trains the
        model; the clustering loss trains only the memories)."""
        if "labels" not in batch:
            raise ValueError("loss() needs batch['labels']")
        labels = batch["labels"].float()
        if self.training:  # once per step, whichever losses read the targets after
            track_targets_(
                labels, self.regression, self.target_mean, self.target_std, self.target_tracked
            )
        # Residual fusion: the task losses train the base ranker on its own logits.
        total, parts = self._task_losses(out.get("base_logits", out["logits"]), labels)
        if "residual" in out:  # the head learns from base (held fixed) + residual
            base = out["base_logits"].detach()
            residual_loss = self._task_losses(base + out["residual"], labels)[0]
            parts["residual"] = residual_loss
            # The base's own loss on the same rows: what the head has to beat.
            parts["residual_base"] = self._task_losses(base, labels)[0]
            total = total + residual_loss
        if self.query_tower is not None and self.aux_task_index is not None:
            aux_loss = task_loss(out["aux"]["aux_logit"], labels[:, self.aux_task_index])
            parts["aux"] = aux_loss
            total = total + self.cfg.aux_loss_weight * aux_loss
        return total, parts

    def _task_losses(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return weighted_task_losses(
            logits, labels, self.cfg.tasks, self.task_weights, self.target_scales()
        )

    def target_scales(self) -> list[TargetScale]:
        """Per task: (mean, std) of a regression's log1p target, None for a binary task."""
        return [
            (self.target_mean[t], self.target_std[t]) if regression else None
            for t, regression in enumerate(self.regression)
        ]

    def clustering_loss(self, batch: dict[str, Tensor], out: dict) -> Tensor:
        """GHCA loss of the memories, on detached queries: it moves centres and slots only."""
        return self.duia.clustering_loss(out["aux"], batch.get("labels"))

    # ------------------------------------------------------------------ serving
    @torch.no_grad()
    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, n_tasks]: probabilities for binary tasks, play time in label units for
        regressions. Runs in eval mode, so it never writes the memories."""
        was_training = self.training
        self.eval()
        try:
            logits = self.forward(batch)["logits"]
        finally:
            self.train(was_training)
        return to_label_units(logits, self.target_scales())

    def load_weights(self, state: dict[str, Tensor]) -> None:
        """load_state_dict for weights saved by any release: weights saved before the
        regression targets were standardised have no target_* buffers, and scored as
        mean 0, std 1 — which is what they get here."""
        legacy = {
            "target_mean": torch.zeros_like(self.target_mean),
            "target_std": torch.ones_like(self.target_std),
            "target_tracked": torch.zeros_like(self.target_tracked),
        }
        if self.residual is not None:  # saved before the residual gate: every segment on
            legacy["residual.segment_on"] = torch.ones_like(self.residual.segment_on)
        self.load_state_dict({**legacy, **state})

    # ------------------------------------------------------------------ memories
    def memories(self) -> dict[str, nn.Module]:
        return self.duia.memories() if self.duia is not None else {}

    def cluster_metrics(self) -> dict[str, float]:
        return self.duia.cluster_metrics() if self.duia is not None else {}

    def save_memory(self, path: str | Path) -> None:
        """All cluster memories as safetensors; the ModelConfig as JSON in its metadata."""
        save_memories(path, self.memories(), self.cfg.to_dict())

    def load_memory(self, path: str | Path) -> list[str]:
        """Warm-start this model's memories from a file; -> names of the memories loaded.
        A memory the file lacks keeps its current state; a shape mismatch is an error."""
        states, saved_cfg = load_memories(path)
        return self.duia.load_memories(states, saved_cfg, path) if self.duia is not None else []

    # ------------------------------------------------------------------ optimisation
    def centre_parameters(self) -> list[nn.Parameter]:
        return self.duia.centre_parameters() if self.duia is not None else []

    def parameter_groups(self, lr: float) -> list[dict]:
        """Main model (Adam, `lr`) and cluster centres (SGD, `cfg.cluster_lr`)."""
        centre_ids = {id(p) for p in self.centre_parameters()}
        main = [p for p in self.parameters() if id(p) not in centre_ids]
        groups = [{"params": main, "lr": lr, "algorithm": "adam", "name": "model"}]
        if centre_ids:
            groups.append(
                {
                    "params": self.centre_parameters(),
                    "lr": self.cfg.cluster_lr,
                    "algorithm": "sgd",
                    "name": "centres",
                }
            )
        return groups

    def build_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return RankerOptimizer(self.parameter_groups(lr), lr=lr)


def build_ranker(cfg: ModelConfig, device: torch.device | str = "cpu") -> DuiaRanker:
    """Build the ranker with tables of >= `cfg.meta_init_min_rows` rows created on the
    meta device and materialised once, in place, on `device`."""
    model = DuiaRanker(cfg, device=device, materialise=False)
    model.materialise(device)
    return model
