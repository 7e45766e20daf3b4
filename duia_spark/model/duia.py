"""DUIA — Dynamic User Interest Augmentation: UIE, UPBE and UHSE.

From "Dynamic User Interest Augmentation via Stream Clustering and Memory Networks
in Large-Scale Recommender Systems" (arXiv 2405.13238). The full text is not
available offline; the choices below are our reconstruction (docs/model.md), each
behind a config switch.

The ranking model only *reads* the memories: every centre it sees is detached, so
the main loss never moves a centre and the clustering loss never moves the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from duia_spark.model.ghca import ClusterMemory, Retrieval, per_centre_mean_distance
from duia_spark.model.layers import TargetAttention, mlp, new_rng_state, normalise, private_rng


def pool_by_similarity(
    centres: Tensor, sim: Tensor, keep: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Softmax(sim / T) over the kept centres. centres [B, k, d], sim/keep [B, k] ->
    ([B, d], mask [B]). A row that keeps nothing gets an exact zero vector."""
    logits = (sim / temperature).masked_fill(~keep, torch.finfo(sim.dtype).min)
    w = torch.softmax(logits, dim=1) * keep.to(sim.dtype)  # [B, k]
    return torch.einsum("bk,bkd->bd", w, centres), keep.any(dim=1)


class UserInterestTower(nn.Module):
    """Auxiliary tower that makes the user-interest query q from the user's behaviour
    (id embedding, pooled exposure and positive histories) and profile (dense features).

    Its inputs are detached from the main model, so it learns only from its own loss:
    an auxiliary click model sigmoid(q . W sg(target item)). A tower trained by the
    clustering loss would be free to collapse every q onto one centre; the click loss
    makes q a user-interest vector, and the item projection W aligns the q space with
    the item space.

    The memory exists for sparse users, whose behaviour inputs are empty or untrained,
    so during training the behaviour part of a row is zeroed with probability
    `behaviour_dropout` (as in DropoutNet, Volkovs et al., NeurIPS 2017): the tower
    then also learns to place a user from the profile alone, from the abundant rows of
    active users, in the same region as the user's behaviour would.
    """

    def __init__(
        self,
        behaviour_dim: int,
        profile_dim: int,
        hidden: int,
        memory_dim: int,
        item_dim: int,
        behaviour_dropout: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.net = mlp(behaviour_dim + profile_dim, hidden, memory_dim)
        self.item_proj = nn.Linear(item_dim, memory_dim)
        self.behaviour_dropout = behaviour_dropout
        # A private stream keeps training reproducible whatever else draws random numbers.
        self.register_buffer("rng_state", new_rng_state(seed))

    def forward(self, behaviour: Tensor, profile: Tensor) -> Tensor:
        behaviour, profile = behaviour.detach(), profile.detach()
        if self.training and self.behaviour_dropout > 0:
            with private_rng(self.rng_state) as g:
                keep = torch.rand(behaviour.shape[0], generator=g)
            keep = (keep >= self.behaviour_dropout).to(behaviour.device, behaviour.dtype)
            behaviour = behaviour * keep.unsqueeze(1)
        return self.net(torch.cat([behaviour, profile], dim=1))  # [B, m]

    def aux_logit(self, q: Tensor, item: Tensor) -> Tensor:
        return (q * self.item_proj(item.detach())).sum(-1)  # [B]


class UserInterestEnhancement(nn.Module):
    """UIE: the user's top-k level-1 centres -> enhancement vector; the winner's level-2
    children attended with the target item as query -> personalised enhancement."""

    def __init__(
        self,
        memory: ClusterMemory,
        item_dim: int,
        similarity_threshold: float,
        threshold_enabled: bool,
        temperature: float,
    ) -> None:
        super().__init__()
        self.memory = [memory]  # a list, so the memory is not registered twice
        self.threshold = similarity_threshold
        self.threshold_enabled = threshold_enabled
        self.temperature = temperature
        self.children_attention = TargetAttention(item_dim, memory.dim)
        self.register_buffer("rows_seen", torch.zeros((), dtype=torch.float64))
        self.register_buffer("rows_enhanced", torch.zeros((), dtype=torch.float64))

    def forward(self, r: Retrieval, target_item: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> enhancement [B, m], personalised enhancement [B, m], mask [B] (1 = kept a centre)."""
        memory = self.memory[0]
        top = F.embedding(r.top_idx, normalise(memory.slot_centres().detach()))  # [B, k, m]
        if self.threshold_enabled:
            keep = r.top_sim >= self.threshold
        else:
            keep = torch.ones_like(r.top_sim, dtype=torch.bool)
        enhancement, mask = pool_by_similarity(top, r.top_sim, keep, self.temperature)
        children = r.children  # [B, K2, m] unit vectors, kept by a hierarchical retrieval
        if children is None:
            children = normalise(memory.centres2.detach())[r.parent]
        all_children = torch.ones(children.shape[:2], dtype=torch.bool, device=children.device)
        personal = self.children_attention(target_item, children, all_children)  # [B, m]
        # No kept centre means no trustworthy cluster: zero, never a guess.
        personal = personal * mask.unsqueeze(1).to(personal.dtype)
        if self.training:
            self.rows_seen += mask.numel()
            self.rows_enhanced += mask.sum()
        return enhancement, personal, mask

    def enhanced_share(self) -> float:
        seen = float(self.rows_seen)
        return float(self.rows_enhanced) / seen if seen else float("nan")


class PositiveBehaviourEnhancement(nn.Module):
    """UPBE: item -> user-cluster memory P [S, d_item], one slot per top-level user unit.

    Writes: a positive behaviour of a user in cluster c pulls P_c toward the (detached,
    normalised) item vector, by gradient descent on a per-slot normalised squared
    distance in the centre optimizer group — the same mechanism and rate rho as the
    GHCA centres, so P is online k-means per cluster over positively consumed items.
    P starts at zero; since reads use cosine similarity, one write already points P_c
    the right way. When the user memory re-seeds unit c, P_c is cleared.

    Reads: the target item's cosine similarity to every written slot, top-k, below-
    threshold slots dropped; the kept slots' *user* centres are pooled into an
    item-conditioned enhancement vector ("who consumes this item positively").
    """

    def __init__(
        self,
        memory: ClusterMemory,
        item_dim: int,
        top_k: int,
        similarity_threshold: float,
        threshold_enabled: bool,
        temperature: float,
    ) -> None:
        super().__init__()
        self.memory = [memory]
        self.top_k = top_k
        self.threshold = similarity_threshold
        self.threshold_enabled = threshold_enabled
        self.temperature = temperature
        self.slots = nn.Parameter(torch.zeros(memory.n_slots, item_dim))
        self.register_buffer("writes", torch.zeros(memory.n_slots))
        self.register_buffer("written_generation", torch.zeros(memory.n_slots, dtype=torch.long))

    def valid_slots(self) -> Tensor:
        return (self.writes > 0) & (self.written_generation == self.memory[0].generation)

    def forward(self, item: Tensor) -> tuple[Tensor, Tensor]:
        """item: [B, d_item] normalised, detached -> enhancement [B, m], mask [B]."""
        memory = self.memory[0]
        # -inf on slots nothing was written to, added inside the product.
        unwritten = torch.zeros_like(self.writes).masked_fill(~self.valid_slots(), float("-inf"))
        sim = torch.addmm(unwritten, item, normalise(self.slots.detach()).T)  # [B, S]
        top_sim, top_idx = sim.topk(min(self.top_k, sim.shape[1]), dim=1)  # [B, k]
        keep = torch.isfinite(top_sim)
        if self.threshold_enabled:
            keep &= top_sim >= self.threshold
        users = F.embedding(top_idx, normalise(memory.slot_centres().detach()))  # [B, k, m]
        top_sim = torch.where(keep, top_sim, torch.zeros_like(top_sim))
        return pool_by_similarity(users, top_sim, keep, self.temperature)

    def slot_anchor(self, slot: Tensor) -> tuple[Tensor, Tensor]:
        """The positive-item direction of each row's user unit: [B, d_item], valid [B]."""
        return normalise(self.slots.detach()[slot]), self.valid_slots()[slot]

    @torch.no_grad()
    def observe(self, slot: Tensor, positive: Tensor, weights: Tensor) -> None:
        stale = self.written_generation != self.memory[0].generation
        if bool(stale.any()):
            self.slots.data[stale] = 0.0
            self.writes[stale] = 0.0
            self.written_generation[stale] = self.memory[0].generation[stale]
        self.writes.index_add_(0, slot[positive], weights[positive])

    def write_loss(self, item: Tensor, slot: Tensor, positive: Tensor, weights: Tensor) -> Tensor:
        if not bool(positive.any()):
            return self.slots.sum() * 0.0  # keeps P in the graph for DDP
        return per_centre_mean_distance(
            item.detach()[positive],
            self.slots.index_select(0, slot[positive]),
            slot[positive],
            weights[positive],
            self.slots.shape[0],
        )


class HistorySequenceEnhancement(nn.Module):
    """UHSE: each history item -> its nearest item centre (a level-2 centre of the item
    memory); padded positions of short histories are filled with the item centres
    nearest to an interest anchor (the user's history, or, with no history, the
    positive-item direction P_c of the user's cluster). Returns the enhanced sequence
    as extra keys for the history's target attention.

    In training, item -> centre assignments are cached per item id for the length of
    one memory window: a batch of histories repeats few items it has not seen before,
    and an item's assignment changes slowly (its embedding and the centres drift, but
    centres are only re-seeded when a window closes, which clears the cache). Target
    items refresh their entry every training step. The cache is part of the state
    dict (a resumed run continues exactly); loading a memory file clears it; eval /
    predict never use it.
    """

    def __init__(self, item_memory: ClusterMemory, item_dim: int, n_items: int) -> None:
        super().__init__()
        self.memory = [item_memory]
        # Centres are unit vectors in the detached item space; this maps them into the
        # key space the history attention uses for the raw item embeddings.
        self.key_proj = nn.Linear(item_dim, item_dim)
        # Saved with the weights, so a resumed run continues with the same cache.
        self.register_buffer("leaf_cache", torch.full((n_items,), -1, dtype=torch.int32))
        self.register_buffer("cache_version", torch.full((), -1, dtype=torch.long))

    @torch.no_grad()
    def _check_cache(self) -> None:
        version = self.memory[0].version
        if int(self.cache_version) != int(version):
            self.leaf_cache.fill_(-1)
            self.cache_version.copy_(version)

    @torch.no_grad()
    def clear_cache(self) -> None:
        self.leaf_cache.fill_(-1)

    @torch.no_grad()
    def remember(self, items: Tensor, leaf: Tensor) -> None:
        """Store fresh assignments (the training step computes them for target items)."""
        self._check_cache()
        self.leaf_cache[items] = leaf.to(torch.int32)

    @torch.no_grad()
    def history_leaves(self, hist_items: Tensor, item_table: nn.Embedding) -> Tensor:
        """Level-2 item centre of every history position: [B, L] long. Outside training
        every assignment is computed afresh, so a prediction depends only on the
        weights and the memory, never on what was scored before."""
        if not self.training:
            uniq, inverse = torch.unique(hist_items, return_inverse=True)
            return self.memory[0].retrieve(normalise(item_table(uniq)), top_k=1).leaf[inverse]
        self._check_cache()
        flat = hist_items.reshape(-1)
        leaf = self.leaf_cache[flat].long()
        missing = leaf < 0
        if bool(missing.any()):
            new, inverse = torch.unique(flat[missing], return_inverse=True)
            found = self.memory[0].retrieve(normalise(item_table(new)), top_k=1).leaf
            self.leaf_cache[new] = found.to(torch.int32)
            leaf[missing] = found[inverse]
        return leaf.view_as(hist_items)

    def forward(
        self,
        history_direction: Tensor,
        hist_items: Tensor,
        hist_mask: Tensor,
        item_table: nn.Embedding,
        fallback_anchor: Tensor | None,
        fallback_valid: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """history_direction: [B, d] unit mean of the history's main-model item embeddings
        (any vector for rows without history), the interest anchor of a short history.
        -> (key table [K1*K2, d], centre index [B, L], mask [B, L]): the enhanced
        sequence as rows of a shared table, for TargetAttention's `shared` keys."""
        memory = self.memory[0]
        with torch.no_grad():
            mapped = self.history_leaves(hist_items, item_table)  # [B, L]
            has_hist = hist_mask.any(dim=1)
            anchor, anchor_ok = history_direction, has_hist
            if fallback_anchor is not None:
                anchor = torch.where(has_hist.unsqueeze(1), anchor, fallback_anchor)
                anchor_ok = has_hist | fallback_valid
            nearest = memory.nearest_leaves(anchor, hist_items.shape[1])  # [B, n]
            # The j-th padded position takes the j-th nearest centre.
            rank = ((~hist_mask).cumsum(dim=1) - 1).clamp(0, nearest.shape[1] - 1)
            leaf = torch.where(hist_mask, mapped, nearest.gather(1, rank))  # [B, L]
            mask = hist_mask | anchor_ok.unsqueeze(1)
        # Project the K1*K2 centres once rather than B*L gathered copies of them.
        table = self.key_proj(normalise(memory.leaf_centres().detach()))  # [K1*K2, d]
        return table, leaf, mask
