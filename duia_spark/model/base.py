"""The base ranker: embeddings, target attention over the histories, PLE.

This is variant "ple" whole, and the part of every variant that ranks: the DUIA
enhancement (enhancement.py) adds inputs to it, the residual head (residual.py) a
correction to its logits.

PLE's input, per row: the user's id embedding [d]; the target item — its id, category
and author embeddings together [3d]; the user's and the item's dense features; the side
features' embeddings (when the source declares some); target-attention pools of the
positive history and of the exposure history [d each]. It is batch-normalised per
feature (embeddings start near 0.05, dense features near 1 and memory vectors are unit
length: without it the experts see mostly whichever part happens to be largest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from duia_spark.model.config import ModelConfig
from duia_spark.model.deferred_init import make_embedding, materialise_embeddings_
from duia_spark.model.layers import TargetAttention, batch_norm_rows
from duia_spark.model.ple import PLE


@dataclass
class RankerInputs:
    """One batch, embedded: what the base ranker and the DUIA enhancement read."""

    item_idx: Tensor  # [B] long, the target items
    user: Tensor  # [B, d]
    item: Tensor  # [B, d] the target item's id embedding
    target: Tensor  # [B, 3d] the target item: id, category, author
    hist_items: Tensor  # [B, L] long, 0 = padding
    hist: Tensor  # [B, L, d]
    hist_mask: Tensor  # [B, L] bool
    pos: Tensor  # [B, P, d]
    pos_mask: Tensor  # [B, P] bool
    profile: Tensor  # [B, n_user_dense (+ user side)]: what the query tower knows of the user
    features: list[Tensor]  # PLE's input, but for the exposure history's pool


class BaseRanker(nn.Module):
    """Embedding tables, the two history attentions and (after `build_ple`) PLE.

    PLE is built by `build_ple`, not here: with input fusion its input also holds the
    DUIA vectors, whose width is known once the enhancement is built."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, big = cfg.embedding_dim, cfg.meta_init_min_rows
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
        self.target_dim = 3 * d
        self.hist_attention = TargetAttention(self.target_dim, d)
        self.pos_attention = TargetAttention(self.target_dim, d)
        # user + target (3d) + dense + side + pooled positive history + pooled history
        dense = cfg.n_user_dense + cfg.n_item_dense
        self.ple_input_dim = d + self.target_dim + dense + side_dim + 2 * d

    def build_ple(self, extra_width: int = 0) -> None:
        """PLE and its input batch norm, over the base features and `extra_width` more."""
        cfg = self.cfg
        self.ple_input_dim += extra_width
        self.input_norm = nn.BatchNorm1d(self.ple_input_dim)
        self.ple = PLE(
            self.ple_input_dim,
            len(cfg.tasks),
            cfg.ple_levels,
            cfg.experts_per_task,
            cfg.shared_experts,
            cfg.expert_hidden,
            cfg.tower_hidden,
            cfg.dropout,
        )

    def embedding_tables(self) -> list[nn.Embedding]:
        return [self.user_emb, self.item_emb, self.category_emb, self.author_emb]

    def materialise(self, device: torch.device | str = "cpu") -> None:
        """Allocate meta-device tables on `device` and give every table its explicit init."""
        materialise_embeddings_(
            self.embedding_tables(), device, self.cfg.seed, self.cfg.embedding_init_std
        )

    def embed(self, batch: dict[str, Tensor]) -> RankerInputs:
        """The batch's embeddings, and every PLE input but the exposure history's pool."""
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
        target = torch.cat(
            [item, self.category_emb(batch["category_idx"]), self.author_emb(batch["author_idx"])],
            dim=1,
        )  # [B, 3d]
        dense = [batch["user_dense"].float(), batch["item_dense"].float()]
        positive_pool = self.pos_attention(target, pos, pos_mask)  # [B, d]
        profile = batch["user_dense"].float()
        side = []
        if self.side_emb is not None:
            side = [self.side_emb(batch["side_cat"] + self.side_offsets).flatten(1)]  # [B, n*c]
            profile = torch.cat([profile, side[0][:, : self.user_side_dim].detach()], dim=1)
        return RankerInputs(
            item_idx=batch["item_idx"],
            user=user,
            item=item,
            target=target,
            hist_items=hist_items,
            hist=hist,
            hist_mask=hist_mask,
            pos=pos,
            pos_mask=pos_mask,
            profile=profile,
            features=[user, target, *dense, *side, positive_pool],
        )

    def rank(
        self,
        x: RankerInputs,
        shared: tuple[Tensor, Tensor, Tensor] | None = None,
        enhancement: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """-> (PLE's batch-normalised input [B, ple_input_dim], logits [B, T]). Input
        fusion: `shared` (UHSE's enhanced sequence) adds keys to the history's attention
        and `enhancement` (the DUIA vectors) joins the input."""
        history_pool = self.hist_attention(x.target, x.hist, x.hist_mask, shared)  # [B, d]
        features = [*x.features, history_pool]
        if enhancement is not None:
            features.append(enhancement)
        z = batch_norm_rows(self.input_norm, torch.cat(features, dim=1))
        return z, self.ple(z)  # [B, ple_input_dim], [B, T]
