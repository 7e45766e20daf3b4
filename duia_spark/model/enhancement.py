"""The DUIA enhancement: the cluster memories and the vectors the ranker reads from them.

From one embedded batch (base.py's `RankerInputs`) it makes what DUIA adds:
- UIE (every DUIA variant): the query tower's q retrieves the user memory's top level-1
  centres -> an enhancement vector; the winner's level-2 children attended with the
  target item as query -> a personalised enhancement vector; and a mask (1 = a centre
  was kept);
- UPBE (`ple+uie+upbe`, `ple+duia`): the target item reads the slots P -> a vector of
  the users who consume such items positively, and a mask;
- UHSE (`ple+duia`): the history's items mapped onto the item memory's centres, short
  histories filled from the centres nearest the user's interest -> the enhanced
  sequence, as extra keys of a target attention.

The UIE and UPBE vectors are concatenated and, with `enhancement_dim` > 0, mapped to
that width. With input fusion they join PLE's input and the enhanced sequence the base
ranker's history attention; with residual fusion they, and the head's own attention
pool of the enhanced sequence, are the residual head's input, and nothing reaches the
base ranker.

In training mode the enhancement also keeps its memories: `prepare` before a batch
reads them, `observe` after (usage counters, recent queries, UPBE's slot bookkeeping,
re-seeding of dead centres); `clustering_loss` moves centres and slots only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from duia_spark.model.base import RankerInputs
from duia_spark.model.config import ModelConfig
from duia_spark.model.duia import (
    HistorySequenceEnhancement,
    PositiveBehaviourEnhancement,
    UserInterestEnhancement,
    UserInterestTower,
)
from duia_spark.model.ghca import ClusterMemory
from duia_spark.model.layers import TargetAttention, masked_mean, normalise


@dataclass
class Enhancement:
    """What one batch gets from DUIA."""

    vector: Tensor  # [B, DuiaEnhancement.width]
    # Input fusion with UHSE: the enhanced sequence as shared keys (table [K1*K2, d],
    # index [B, L], mask [B, L]) for the base ranker's history attention; else None.
    shared: tuple[Tensor, Tensor, Tensor] | None
    # Retrievals and queries the memories' bookkeeping and losses read afterwards.
    aux: dict


class DuiaEnhancement(nn.Module):
    """UIE (+ UPBE, + UHSE) over the GHCA memories, per `cfg.variant`."""

    # Its parts, in the order they are built (and their parameters drawn).
    PARTS = (
        "user_memory",
        "query_tower",
        "uie",
        "upbe",
        "item_memory",
        "uhse",
        "duia_proj",
        "uhse_attention",
    )

    def __init__(self, cfg: ModelConfig, target_dim: int, residual_head: bool) -> None:
        super().__init__()
        self.cfg = cfg
        # Residual fusion: the vectors feed a head, and carry no gradient into the base.
        self.residual_head = residual_head
        task_index = {t: i for i, t in enumerate(cfg.tasks)}
        self.positive_index = [task_index[t] for t in cfg.positive_behaviours if t in task_index]
        d, m = cfg.embedding_dim, cfg.memory_dim
        self.upbe: PositiveBehaviourEnhancement | None = None
        self.item_memory: ClusterMemory | None = None
        self.uhse: HistorySequenceEnhancement | None = None
        self.duia_proj: nn.Linear | None = None
        self.uhse_attention: TargetAttention | None = None
        self._build_user_interest(cfg, target_dim)
        width = 2 * m + 1  # enhancement, personalised enhancement, mask
        if cfg.use_upbe:
            self.upbe = PositiveBehaviourEnhancement(
                self.user_memory,
                target_dim,
                cfg.top_k,
                cfg.similarity_threshold,
                cfg.similarity_threshold_enabled,
                cfg.attention_temperature,
            )
            width += m + 1  # item-conditioned enhancement, mask
        if cfg.use_uhse:
            # Items carry no activity segment: the item memory is not balanced.
            self.item_memory = self._memory(cfg.item_k1, cfg.item_k2, d, False, 1)
            self.uhse = HistorySequenceEnhancement(self.item_memory, d, cfg.n_items)
        # The vectors would nearly double the input of PLE's first level, whose experts
        # dominate the step time; a linear map to `enhancement_dim` keeps them cheap
        # (0: concatenate them as they are).
        if cfg.enhancement_dim > 0:
            self.duia_proj = nn.Linear(width, cfg.enhancement_dim)
            width = cfg.enhancement_dim
        if residual_head and self.uhse is not None:  # the head's pool of the sequence
            self.uhse_attention = TargetAttention(target_dim, d)
            width += d
        self.width = width

    def _build_user_interest(self, cfg: ModelConfig, target_dim: int) -> None:
        """UIE's parts: the user memory, the query tower that makes q, UIE itself."""
        self.user_memory = self._memory(cfg.k1, cfg.k2, cfg.memory_dim, cfg.balanced_sampling, 0)
        self.query_tower = UserInterestTower(
            3 * cfg.embedding_dim,
            cfg.n_user_dense + cfg.side_embedding_dim * len(cfg.user_cat_buckets),
            cfg.query_tower_hidden,
            cfg.memory_dim,
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

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: RankerInputs, segment: Tensor | None, item_table: nn.Embedding
    ) -> Enhancement:
        """`item_table`: the ranker's item embeddings, which UHSE maps onto centres."""
        # UPBE's item vector: the whole target (id, category, author), detached. The item
        # memory (UHSE) must also map history items, of which only ids are known, so it
        # clusters id embeddings.
        aux = {"target_unit": normalise(x.target.detach()), "item_unit": normalise(x.item.detach())}
        # Direction of the exposure history (no grad): the query tower's input and UHSE's
        # interest anchor for short histories.
        hist_dir = normalise(masked_mean(x.hist.detach(), x.hist_mask))  # [B, d]
        parts = self._user_interest(x, hist_dir, segment, aux)
        if self.upbe is not None:
            # Read before this batch writes, so no row sees its own label.
            upbe_vec, upbe_mask = self.upbe(aux["target_unit"])
            parts += [upbe_vec, upbe_mask.unsqueeze(1).float()]
            aux["upbe_mask"] = upbe_mask
        shared = None
        if self.uhse is not None:
            shared = self._enhanced_sequence(x, hist_dir, aux, item_table)
        vector = torch.cat(parts, dim=1)
        if self.duia_proj is not None:
            vector = self.duia_proj(vector)
        if self.uhse_attention is None:
            return Enhancement(vector, shared, aux)
        # Residual fusion: the head reads the enhanced sequence as its own pool (of the
        # shared keys only), not as keys of the base's history attention.
        nothing = x.hist_mask[:, :0]  # [B, 0]
        pool = self.uhse_attention(x.target.detach(), x.hist.detach()[:, :0], nothing, shared)
        return Enhancement(torch.cat([vector, pool], dim=1), None, aux)

    def _user_interest(
        self, x: RankerInputs, hist_dir: Tensor, segment: Tensor | None, aux: dict
    ) -> list[Tensor]:
        """UIE -> [enhancement [B, m], personalised enhancement [B, m], mask [B, 1]]."""
        # Unit vectors: the tower should read directions, not the embeddings' scale,
        # which starts tiny and drifts as the main model trains.
        behaviour = torch.cat(
            [
                normalise(x.user.detach()),
                hist_dir,
                normalise(masked_mean(x.pos.detach(), x.pos_mask)),
            ],
            dim=1,
        )  # [B, 3d]
        q = self.query_tower(behaviour, x.profile)  # [B, m]
        q_unit = normalise(q.detach())
        weights = self.user_memory.segment_weights(segment, q.shape[0])
        if self.training:
            self.user_memory.prepare(q_unit, segment)
        user_r = self.user_memory.retrieve(q_unit, self.cfg.top_k, with_children=True)
        target = x.target.detach() if self.residual_head else x.target
        enhancement, personal, mask = self.uie(user_r, target)
        aux.update(
            user_query=q_unit,
            user_retrieval=user_r,
            cluster_weights=weights,
            aux_logit=self.query_tower.aux_logit(q, x.target),
            uie_mask=mask,
        )
        return [enhancement, personal, mask.unsqueeze(1).float()]

    def _enhanced_sequence(
        self, x: RankerInputs, hist_dir: Tensor, aux: dict, item_table: nn.Embedding
    ) -> tuple[Tensor, Tensor, Tensor]:
        """UHSE -> the enhanced sequence as shared keys: L more keys per row, rows of the
        projected centre table."""
        if self.training:
            self.item_memory.prepare(aux["item_unit"], None)
        item_r = self.item_memory.retrieve(aux["item_unit"], 1)
        aux["item_retrieval"] = item_r
        anchor, anchor_ok = None, None
        if self.upbe is not None:
            # P_c lives in the target space [id | category | author]; its id part is the
            # positive-item direction of the user's cluster in the item memory's space.
            anchor, anchor_ok = self.upbe.slot_anchor(aux["user_retrieval"].slot)
            anchor = normalise(anchor[:, : self.cfg.embedding_dim])
        shared = self.uhse(hist_dir, x.hist_items, x.hist_mask, item_table, anchor, anchor_ok)
        if self.training:
            self.uhse.remember(x.item_idx, item_r.leaf)
        return shared

    # ------------------------------------------------------------------ memories
    @torch.no_grad()
    def observe(self, aux: dict, segment: Tensor | None, labels: Tensor | None) -> None:
        """After a training forward: usage counters, recent queries, UPBE's writes."""
        r, w = aux["user_retrieval"], aux["cluster_weights"]
        self.user_memory.observe(aux["user_query"], r, segment, w)
        if self.upbe is not None and labels is not None:
            self.upbe.observe(r.slot, self.positive_rows(labels), w)
        if self.item_memory is not None:
            unit = aux["item_unit"]
            self.item_memory.observe(unit, aux["item_retrieval"], None, torch.ones_like(unit[:, 0]))

    def positive_rows(self, labels: Tensor) -> Tensor:
        """[B] bool: rows with a positive behaviour (`cfg.positive_behaviours`)."""
        if not self.positive_index:
            return torch.zeros(labels.shape[0], dtype=torch.bool, device=labels.device)
        return (torch.nan_to_num(labels[:, self.positive_index]) > 0).any(dim=1)

    def clustering_loss(self, aux: dict, labels: Tensor | None) -> Tensor:
        """GHCA loss of the user memory, UPBE writes and the item memory, on detached
        queries: gradients reach centres and slots only."""
        weights = aux["cluster_weights"]
        loss = self.user_memory.clustering_loss(aux["user_query"], aux["user_retrieval"], weights)
        if self.upbe is not None and labels is not None:
            positive = self.positive_rows(labels.float())
            slot = aux["user_retrieval"].slot
            loss = loss + self.upbe.write_loss(aux["target_unit"], slot, positive, weights)
        if self.item_memory is not None:
            item_unit = aux["item_unit"]
            ones = torch.ones_like(item_unit[:, 0])
            loss = loss + self.item_memory.clustering_loss(item_unit, aux["item_retrieval"], ones)
        return loss

    def memories(self) -> dict[str, nn.Module]:
        named = {"user": self.user_memory, "upbe": self.upbe, "item": self.item_memory}
        return {k: v for k, v in named.items() if v is not None}

    def centre_parameters(self) -> list[nn.Parameter]:
        """The parameters the clustering loss trains (SGD at `cfg.cluster_lr`)."""
        params = list(self.user_memory.centre_parameters())
        if self.item_memory is not None:
            params += self.item_memory.centre_parameters()
        if self.upbe is not None:
            params.append(self.upbe.slots)
        return params

    def cluster_metrics(self) -> dict[str, float]:
        out = dict(self.user_memory.metrics("user"))
        out["uie_enhanced_share"] = self.uie.enhanced_share()
        if self.upbe is not None:
            out["upbe_written_slots"] = float(self.upbe.valid_slots().sum())
        if self.item_memory is not None:
            out.update(self.item_memory.metrics("item"))
        return out

    def load_memories(
        self, states: dict[str, dict[str, Tensor]], saved_cfg: dict, path: str | Path
    ) -> list[str]:
        """Warm-start the memories from saved states (ghca.load_memories); -> the names
        loaded. A memory the file lacks keeps its state; a shape mismatch is an error."""
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
