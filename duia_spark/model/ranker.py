"""DuiaRanker: embeddings + history attention + (optional) DUIA enhancements -> PLE.

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

Variant "ple" feeds PLE with the target item, user, category and author embeddings,
the dense features and target-attention pools of the exposure and positive
histories. DUIA variants make UIE's enhancement, personalised enhancement and mask,
UPBE's item-conditioned enhancement and mask, and (UHSE) the history's enhanced
sequence. With `enhancement_fusion: input` these join the PLE input and the history
attention's keys; with `residual` (the default) PLE trains as variant "ple" does and a
head (residual.py) turns them into a correction of its logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from duia_spark.model.config import SEGMENT_IDS, ModelConfig
from duia_spark.model.deferred_init import make_embedding, materialise_embeddings_
from duia_spark.model.duia import (
    HistorySequenceEnhancement,
    PositiveBehaviourEnhancement,
    UserInterestEnhancement,
    UserInterestTower,
)
from duia_spark.model.ghca import ClusterMemory, load_memories, save_memories
from duia_spark.model.layers import TargetAttention, masked_mean, normalise
from duia_spark.model.optim import RankerOptimizer
from duia_spark.model.ple import PLE
from duia_spark.model.residual import EnhancementResidual


class DuiaRanker(nn.Module):
    """PLE multi-task ranker with optional DUIA (UIE, UPBE, UHSE), per `cfg.variant`."""

    def __init__(
        self, cfg: ModelConfig, device: torch.device | str = "cpu", materialise: bool = True
    ) -> None:
        super().__init__()
        self.cfg = cfg
        d, m = cfg.embedding_dim, cfg.memory_dim
        n_tasks = len(cfg.tasks)
        # Small modules are built on CPU from a private RNG stream, so the same seed
        # gives the same model on any device and the caller's RNG is left alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            big = cfg.meta_init_min_rows
            self.user_emb = make_embedding(cfg.n_users, d, big)
            self.item_emb = make_embedding(cfg.n_items, d, big)
            self.category_emb = make_embedding(cfg.n_categories, d, big)
            self.author_emb = make_embedding(cfg.n_authors, d, big)
            # Side features: one table, each column's buckets at its own offset.
            buckets = cfg.side_cat_buckets
            side_dim = cfg.side_embedding_dim * len(buckets)
            self.user_side_dim = cfg.side_embedding_dim * len(cfg.user_cat_buckets)
            self.side_emb: nn.Embedding | None = None
            if buckets:
                self.side_emb = nn.Embedding(sum(buckets), cfg.side_embedding_dim)
                nn.init.normal_(self.side_emb.weight, std=cfg.embedding_init_std)
                offsets = torch.tensor([0, *buckets[:-1]]).cumsum(0)
                self.register_buffer("side_offsets", offsets, persistent=False)
            # The target item as a query: id, category and author embeddings together.
            target_dim = 3 * d
            self.hist_attention = TargetAttention(target_dim, d)
            self.pos_attention = TargetAttention(target_dim, d)
            # user + target (3d) + dense + side + pooled positive history + pooled history
            width = d + target_dim + cfg.n_user_dense + cfg.n_item_dense + side_dim + 2 * d
            if cfg.use_residual:
                # Residual fusion: the base ranker is built first, from the same draws
                # as variant "ple" (whose init it then equals), DUIA's modules after it.
                self._build_ple(width)

            self.user_memory: ClusterMemory | None = None
            self.item_memory: ClusterMemory | None = None
            self.query_tower: UserInterestTower | None = None
            self.uie: UserInterestEnhancement | None = None
            self.upbe: PositiveBehaviourEnhancement | None = None
            self.uhse: HistorySequenceEnhancement | None = None
            duia_width = 0
            if cfg.use_uie:
                self.user_memory = self._memory(cfg.k1, cfg.k2, m, cfg.balanced_sampling, 0)
                self.query_tower = UserInterestTower(
                    3 * d,
                    cfg.n_user_dense + self.user_side_dim,
                    cfg.query_tower_hidden,
                    m,
                    target_dim,
                    cfg.query_behaviour_dropout,
                    cfg.seed + 2,
                )
                self.uie = UserInterestEnhancement(
                    self.user_memory,
                    target_dim,
                    cfg.similarity_threshold,
                    cfg.similarity_threshold_enabled,
                    cfg.attention_temperature,
                )
                duia_width += 2 * m + 1
            if cfg.use_upbe:
                self.upbe = PositiveBehaviourEnhancement(
                    self.user_memory,
                    target_dim,
                    cfg.top_k,
                    cfg.similarity_threshold,
                    cfg.similarity_threshold_enabled,
                    cfg.attention_temperature,
                )
                duia_width += m + 1
            if cfg.use_uhse:
                # Items carry no activity segment: the item memory is not balanced.
                self.item_memory = self._memory(cfg.item_k1, cfg.item_k2, d, False, 1)
                self.uhse = HistorySequenceEnhancement(self.item_memory, d, cfg.n_items)
            # The DUIA vectors (2m + 1 for UIE, m + 1 for UPBE) would nearly double the
            # input of PLE's first level, whose experts dominate the step time; a
            # linear map to `enhancement_dim` keeps them cheap (0: concatenate as is).
            self.duia_proj: nn.Linear | None = None
            if duia_width and cfg.enhancement_dim > 0:
                self.duia_proj = nn.Linear(duia_width, cfg.enhancement_dim)
                duia_width = cfg.enhancement_dim
            # Residual fusion: a head corrects the base ranker's logits (residual.py);
            # UHSE's enhanced sequence reaches it as its own target-attention pool.
            self.residual: EnhancementResidual | None = None
            # False: the head's correction is left out everywhere (a switch, not state).
            self.residual_served = True
            self.uhse_attention: TargetAttention | None = None
            if cfg.use_residual:
                if self.uhse is not None:
                    self.uhse_attention = TargetAttention(target_dim, d)
                    duia_width += d
                self.residual = EnhancementResidual(
                    duia_width, width, n_tasks, cfg.tower_hidden, len(SEGMENT_IDS)
                )
            else:
                width += duia_width
                self._build_ple(width)
        self.ple_input_dim = width
        task_index = {t: i for i, t in enumerate(cfg.tasks)}
        self.regression = [cfg.is_regression(t) for t in cfg.tasks]
        binary = [t for t, r in zip(cfg.tasks, self.regression, strict=True) if not r]
        aux = cfg.aux_task if cfg.aux_task in binary else (binary[0] if binary else None)
        self.aux_task_index = None if aux is None else task_index[aux]
        self.positive_index = [task_index[t] for t in cfg.positive_behaviours if t in task_index]
        self.register_buffer(
            "task_weights", torch.tensor([cfg.task_weight(t) for t in cfg.tasks]), persistent=False
        )
        # Regressions learn a standardised target: log1p(play time in ms) is
        # about 9 with a spread of about 3, so an unscaled head starts with an MSE near 80
        # and its gradients swamp the binary tasks in the shared experts. The target's
        # running mean and std (tracked in training like BatchNorm's, saved with the
        # weights) map the head's output back to label units at serving.
        self.register_buffer("target_mean", torch.zeros(n_tasks))
        self.register_buffer("target_std", torch.ones(n_tasks))
        self.register_buffer("target_tracked", torch.zeros(n_tasks, dtype=torch.bool))

        # Module.to() cannot copy a meta tensor, so deferred tables are skipped here
        # and allocated by materialise() directly on the device.
        for child in self.children():
            if not any(p.is_meta for p in child.parameters()):
                child.to(device)
        self.task_weights = self.task_weights.to(device)
        self.target_mean = self.target_mean.to(device)
        self.target_std = self.target_std.to(device)
        self.target_tracked = self.target_tracked.to(device)
        if materialise:
            self.materialise(device)

    def _build_ple(self, width: int) -> None:
        cfg = self.cfg
        self.input_norm = nn.BatchNorm1d(width)
        self.ple = PLE(
            width,
            len(cfg.tasks),
            cfg.ple_levels,
            cfg.experts_per_task,
            cfg.shared_experts,
            cfg.expert_hidden,
            cfg.tower_hidden,
        )

    def _memory(self, k1: int, k2: int, dim: int, balanced: bool, offset: int) -> ClusterMemory:
        cfg = self.cfg
        return ClusterMemory(
            k1,
            k2,
            dim,
            hierarchical=cfg.hierarchical,
            balanced_sampling=balanced,
            dead_centre_window=cfg.dead_centre_window,
            dead_centre_min_usage=cfg.dead_centre_min_usage,
            recent_queries=cfg.recent_queries,
            seed=cfg.seed + offset,
        )

    # ------------------------------------------------------------------ init
    def embedding_tables(self) -> list[nn.Embedding]:
        return [self.user_emb, self.item_emb, self.category_emb, self.author_emb]

    def materialise(self, device: torch.device | str = "cpu") -> None:
        """Allocate meta-device tables on `device` and give every table its explicit init."""
        materialise_embeddings_(
            self.embedding_tables(), device, self.cfg.seed, self.cfg.embedding_init_std
        )

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> dict:
        cfg = self.cfg
        hist_items, hist_mask = batch["hist_items"], batch["hist_mask"].bool()
        pos_items, pos_mask = batch["pos_items"], batch["pos_mask"].bool()
        b, seq_len, pos_len = hist_items.shape[0], hist_items.shape[1], pos_items.shape[1]
        # One lookup for target, history and positive items: one dense gradient for the
        # item table instead of three to allocate and add up.
        all_items = torch.cat([batch["item_idx"], hist_items.reshape(-1), pos_items.reshape(-1)])
        item, hist, pos = self.item_emb(all_items).split([b, b * seq_len, b * pos_len])
        hist = hist.view(b, seq_len, -1)  # [B, L, d]
        pos = pos.view(b, pos_len, -1)  # [B, P, d]
        user = self.user_emb(batch["user_idx"])  # [B, d]
        segment = batch.get("segment")
        labels = batch.get("labels")
        target = torch.cat(
            [item, self.category_emb(batch["category_idx"]), self.author_emb(batch["author_idx"])],
            dim=1,
        )  # [B, 3d]
        parts = [
            user,
            target,
            batch["user_dense"].float(),
            batch["item_dense"].float(),
            self.pos_attention(target, pos, pos_mask),
        ]
        profile = batch["user_dense"].float()  # what the query tower knows of the user
        if self.side_emb is not None:
            side = self.side_emb(batch["side_cat"] + self.side_offsets).flatten(1)  # [B, n*c]
            parts.insert(4, side)
            profile = torch.cat([profile, side[:, : self.user_side_dim].detach()], dim=1)
        duia_parts: list[Tensor] = []
        aux: dict = {}
        # UPBE's item vector: the whole target (id, category, author), detached. The item
        # memory (UHSE) must also map history items, of which only ids are known, so it
        # clusters id embeddings.
        aux["target_unit"] = normalise(target.detach())  # [B, 3d]
        aux["item_unit"] = normalise(item.detach())  # [B, d]

        user_r = None
        # Direction of the exposure history (no grad): the query tower's input and UHSE's
        # interest anchor for short histories.
        hist_dir = None
        if self.uie is not None or self.uhse is not None:
            hist_dir = normalise(masked_mean(hist.detach(), hist_mask))  # [B, d]
        if self.uie is not None:
            # Unit vectors: the tower should read directions, not the embeddings' scale,
            # which starts tiny and drifts as the main model trains.
            behaviour = torch.cat(
                [
                    normalise(user.detach()),
                    hist_dir,
                    normalise(masked_mean(pos.detach(), pos_mask)),
                ],
                dim=1,
            )  # [B, 3d]
            q = self.query_tower(behaviour, profile)  # [B, m]
            q_unit = normalise(q.detach())
            weights = self.user_memory.segment_weights(segment, b)
            if self.training:
                self.user_memory.prepare(q_unit, segment)
            user_r = self.user_memory.retrieve(q_unit, cfg.top_k, with_children=True)
            # A residual head's inputs carry no gradient into the base ranker.
            enhancement, personal, uie_mask = self.uie(
                user_r, target.detach() if self.residual is not None else target
            )
            duia_parts += [enhancement, personal, uie_mask.unsqueeze(1).float()]
            aux.update(
                user_query=q_unit,
                user_retrieval=user_r,
                cluster_weights=weights,
                aux_logit=self.query_tower.aux_logit(q, target),
                uie_mask=uie_mask,
            )

        if self.upbe is not None:
            # Read before this batch writes, so no row sees its own label.
            upbe_vec, upbe_mask = self.upbe(aux["target_unit"])
            duia_parts += [upbe_vec, upbe_mask.unsqueeze(1).float()]
            aux["upbe_mask"] = upbe_mask

        shared = None
        uhse_pool = None  # residual fusion: the head's pool of the enhanced sequence
        if self.uhse is not None:
            if self.training:
                self.item_memory.prepare(aux["item_unit"], None)
            item_r = self.item_memory.retrieve(aux["item_unit"], 1)
            aux["item_retrieval"] = item_r
            anchor, anchor_ok = (None, None)
            if self.upbe is not None:
                # P_c lives in the target space [id | category | author]; its id part is
                # the positive-item direction of the user's cluster in the item memory's space.
                anchor, anchor_ok = self.upbe.slot_anchor(user_r.slot)
                anchor = normalise(anchor[:, : cfg.embedding_dim])
            # The enhanced sequence: L more keys, rows of the projected centre table.
            shared = self.uhse(hist_dir, hist_items, hist_mask, self.item_emb, anchor, anchor_ok)
            if self.training:
                self.uhse.remember(batch["item_idx"], item_r.leaf)
        if self.residual is None:
            parts.append(self.hist_attention(target, hist, hist_mask, shared))
        else:  # the base attends over its own history; the enhanced sequence is DUIA's
            parts.append(self.hist_attention(target, hist, hist_mask))
            if shared is not None:  # the head reads it as its own pool (not projected)
                nothing = hist_mask[:, :0]  # [B, 0]: the pool reads the shared keys only
                uhse_pool = self.uhse_attention(
                    target.detach(), hist.detach()[:, :0], nothing, shared
                )

        duia = None
        if duia_parts:
            duia = torch.cat(duia_parts, dim=1)
            if self.duia_proj is not None:
                duia = self.duia_proj(duia)
            if uhse_pool is not None:
                duia = torch.cat([duia, uhse_pool], dim=1)
            if self.residual is None:
                parts.append(duia)
        x = self._batch_norm(self.input_norm, torch.cat(parts, dim=1))
        logits = self.ple(x)  # [B, T]
        out = {"logits": logits, "aux": aux}
        if self.residual is not None:
            residual = self.residual(self._batch_norm(self.residual.norm, duia), x, logits)
            if not bool(self.residual.segment_on.all()):  # the gate switched some off
                if segment is None:
                    raise ValueError(
                        "this model's residual head serves some activity segments only "
                        "(train.residual_gate): batch['segment'] is needed to score it"
                    )
                residual = residual * self.residual.segment_on[segment].unsqueeze(1)
            if not self.residual_served:  # the base ranker's own scores (base_ranker_only)
                residual = torch.zeros_like(residual)
            out.update(base_logits=logits, residual=residual, logits=logits + residual)

        if self.training:
            self._observe(aux, segment, labels)
        return out

    def _batch_norm(self, norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
        """Per-feature standardisation of the PLE input (and of the residual head's input):
        embeddings start near 0.05, dense features near 1 and memory vectors are unit
        length; without it the experts see mostly whichever part happens to be largest."""
        if self.training and x.shape[0] == 1:  # batch statistics need two rows
            return F.batch_norm(
                x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
            )
        return norm(x)

    @torch.no_grad()
    def _observe(self, aux: dict, segment: Tensor | None, labels: Tensor | None) -> None:
        if self.user_memory is not None:
            r, w = aux["user_retrieval"], aux["cluster_weights"]
            self.user_memory.observe(aux["user_query"], r, segment, w)
            if self.upbe is not None and labels is not None:
                self.upbe.observe(r.slot, self._positive_rows(labels), w)
        if self.item_memory is not None:
            unit = aux["item_unit"]
            self.item_memory.observe(unit, aux["item_retrieval"], None, torch.ones_like(unit[:, 0]))

    def _positive_rows(self, labels: Tensor) -> Tensor:
        if not self.positive_index:
            return torch.zeros(labels.shape[0], dtype=torch.bool, device=labels.device)
        return (torch.nan_to_num(labels[:, self.positive_index]) > 0).any(dim=1)

    # ------------------------------------------------------------------ losses
    def loss(self, batch: dict[str, Tensor], out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """-> (total, {task: loss, "aux": ..., "clustering": ...}); logged values are detached."""
        total, parts = self.ranking_loss(batch, out)
        if self.user_memory is not None:
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
            self._track_targets(labels)
        # Residual fusion: the task losses train the base ranker on its own logits.
        logits = out.get("base_logits", out["logits"])
        all_tasks = range(len(self.cfg.tasks))
        total, parts = self._task_losses(logits, labels, all_tasks)
        if "residual" in out:  # the head learns from base (held fixed) + residual
            base = out["base_logits"].detach()
            residual_loss = self._task_losses(base + out["residual"], labels, all_tasks)[0]
            parts["residual"] = residual_loss
            # The base's own loss on the same rows: what the head has to beat.
            parts["residual_base"] = self._task_losses(base, labels, all_tasks)[0]
            total = total + residual_loss
        if self.query_tower is not None and self.aux_task_index is not None:
            aux_logit = out["aux"]["aux_logit"]
            aux_loss = self._task_loss(aux_logit, labels[:, self.aux_task_index], False)
            parts["aux"] = aux_loss
            total = total + self.cfg.aux_loss_weight * aux_loss
        return total, parts

    def _task_losses(
        self, logits: Tensor, labels: Tensor, tasks
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted sum of the listed tasks' losses, and each task's loss by name."""
        parts: dict[str, Tensor] = {}
        total = logits.new_zeros(())
        for t in tasks:
            task_loss = self._task_loss(logits[:, t], labels[:, t], self.regression[t], t)
            parts[self.cfg.tasks[t]] = task_loss
            total = total + self.task_weights[t] * task_loss
        return total, parts

    def clustering_loss(self, batch: dict[str, Tensor], out: dict) -> Tensor:
        """GHCA loss of the user memory, UPBE writes and the item memory, on detached
        queries: gradients reach centres and slots only."""
        aux = out["aux"]
        weights = aux["cluster_weights"]
        loss = self.user_memory.clustering_loss(aux["user_query"], aux["user_retrieval"], weights)
        if self.upbe is not None and "labels" in batch:
            positive = self._positive_rows(batch["labels"].float())
            slot = aux["user_retrieval"].slot
            loss = loss + self.upbe.write_loss(aux["target_unit"], slot, positive, weights)
        if self.item_memory is not None:
            item_unit = aux["item_unit"]
            ones = torch.ones_like(item_unit[:, 0])
            loss = loss + self.item_memory.clustering_loss(item_unit, aux["item_retrieval"], ones)
        return loss

    def _task_loss(self, out: Tensor, y: Tensor, regression: bool, task: int = -1) -> Tensor:
        known = ~torch.isnan(y)
        if not bool(known.any()):
            return out.sum() * 0.0  # keeps the graph whole (DDP) when a signal is missing
        out, y = out[known], y[known]
        if not regression:
            return F.binary_cross_entropy_with_logits(out, y)
        target = torch.log1p(y.clamp_min(0.0))
        return F.mse_loss(out, (target - self.target_mean[task]) / self.target_std[task])

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

    @torch.no_grad()
    def _track_targets(self, labels: Tensor) -> None:
        """Running mean and std of each regression target's log1p (momentum 0.01; the
        first batch with two known values sets them)."""
        for task, regression in enumerate(self.regression):
            y = labels[:, task]
            target = torch.log1p(y[~torch.isnan(y)].clamp_min(0.0))
            if not regression or target.numel() < 2:
                continue
            mean, std = target.mean(), target.std(unbiased=False).clamp_min(1e-3)
            if not bool(self.target_tracked[task]):
                self.target_mean[task], self.target_std[task] = mean, std
                self.target_tracked[task] = True
            else:
                self.target_mean[task].lerp_(mean, 0.01)
                self.target_std[task].lerp_(std, 0.01)

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
        cols = []
        for t, regression in enumerate(self.regression):
            z = logits[:, t]
            if not regression:
                cols.append(torch.sigmoid(z))
            else:
                log_time = z * self.target_std[t] + self.target_mean[t]
                cols.append(torch.expm1(log_time.clamp_min(0.0)))
        return torch.stack(cols, dim=1)

    # ------------------------------------------------------------------ memories
    def memories(self) -> dict[str, nn.Module]:
        named = {"user": self.user_memory, "upbe": self.upbe, "item": self.item_memory}
        return {k: v for k, v in named.items() if v is not None}

    def cluster_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.user_memory is not None:
            out.update(self.user_memory.metrics("user"))
            out["uie_enhanced_share"] = self.uie.enhanced_share()
        if self.upbe is not None:
            out["upbe_written_slots"] = float(self.upbe.valid_slots().sum())
        if self.item_memory is not None:
            out.update(self.item_memory.metrics("item"))
        return out

    def save_memory(self, path: str | Path) -> None:
        """All cluster memories as safetensors; the ModelConfig as JSON in its metadata."""
        save_memories(path, self.memories(), self.cfg.to_dict())

    def load_memory(self, path: str | Path) -> list[str]:
        """Warm-start this model's memories from a file; -> names of the memories loaded.
        A memory the file lacks keeps its current state; a shape mismatch is an error."""
        states, saved_cfg = load_memories(path)
        loaded = []
        for name, module in self.memories().items():
            if name not in states:
                continue
            own = module.state_dict()
            for key, value in states[name].items():
                if key in own and own[key].shape != value.shape:
                    raise ValueError(
                        f"{path}: memory {name}.{key} has shape {tuple(value.shape)}, this model "
                        f"needs {tuple(own[key].shape)} (saved with k1={saved_cfg.get('k1')}, "
                        f"k2={saved_cfg.get('k2')}, hierarchical={saved_cfg.get('hierarchical')})"
                    )
            module.load_state_dict(states[name])
            loaded.append(name)
        if self.uhse is not None and "item" in loaded:
            self.uhse.clear_cache()  # assignments to the replaced centres
        return loaded

    # ------------------------------------------------------------------ optimisation
    def centre_parameters(self) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for memory in (self.user_memory, self.item_memory):
            if memory is not None:
                params += memory.centre_parameters()
        if self.upbe is not None:
            params.append(self.upbe.slots)
        return params

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
