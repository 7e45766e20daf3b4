"""GHCA — gradient-based hierarchical clustering held in a memory network.

From "Dynamic User Interest Augmentation via Stream Clustering and Memory Networks
in Large-Scale Recommender Systems" (arXiv 2405.13238). The full text is not
available offline; this is our reconstruction (see docs/model.md).

- Memory: level-1 centres C1 [K1, d] and level-2 centres C2 [K1, K2, d]; the K2
  level-2 centres under C1_i are its children.
- Assignment by cosine similarity: i* = argmax_i cos(q, C1_i), then
  j* = argmax_j cos(q, C2_{i*, j}) — K1 + K2 comparisons instead of K1 * K2.
  `hierarchical=False` makes the memory one flat level of K1 * K2 centres searched
  exhaustively (the ablation).
- Update: gradient descent on L_clu = ||sg(q) - C1_i*||^2 + ||sg(q) - C2_i*,j*||^2
  inside the normal backward pass, with the centres in their own optimizer group
  (plain SGD, rate rho). Each centre's term is divided by the (weighted) number of
  queries it won in the batch, so one SGD step moves a centre a fraction 2*rho of
  the way to the mean of its queries: mini-batch k-means (Sculley, WWW 2010)
  written as a loss. Queries are L2-normalised, which makes this spherical k-means,
  consistent with the cosine assignment.
- Against collapse: per-row weights that give each activity segment in the batch
  the same total weight (`balanced_sampling`), weighted usage counters per centre,
  and every `dead_centre_window` training steps re-seeding of centres whose usage
  share fell below `dead_centre_min_usage` x the uniform share, from a ring buffer
  of recent queries (sampled segment-balanced when `balanced_sampling`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from duia_spark.model.layers import new_rng_state, normalise, private_rng

MEMORY_FORMAT = "duia-cluster-memory/1"


@dataclass
class Retrieval:
    """Where a batch of queries landed in a ClusterMemory (all tensors carry no grad)."""

    parent: Tensor  # [B] level-1 winner i* (flat memory: the level-1 group of the winner)
    leaf: Tensor  # [B] flat index i* * K2 + j* of the level-2 winner
    slot: Tensor  # [B] top-level unit: i* (hierarchical) or the leaf (flat)
    top_idx: Tensor  # [B, k] the k most similar top-level units
    top_sim: Tensor  # [B, k] their cosine similarities
    comparisons: int  # centres compared per query
    # [B, K2, d] unit vectors of the winner's children, when asked for (hierarchical)
    children: Tensor | None = None


def _top(sim: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """topk along dim 1; max() for k == 1, which is several times faster on CPU."""
    if k == 1:
        best = sim.max(dim=1)
        return best.values.unsqueeze(1), best.indices.unsqueeze(1)
    return sim.topk(min(k, sim.shape[1]), dim=1)


def balanced_segment_weights(segment: Tensor | None, batch: int, n_segments: int = 3) -> Tensor:
    """Per-row weights with mean 1 under which every segment present in the batch
    carries the same total weight; uniform when `segment` is None."""
    if segment is None:
        return torch.ones(batch)
    counts = torch.bincount(segment, minlength=n_segments).to(torch.float32)  # [S]
    present = (counts > 0).sum()
    w = batch / (present * counts.clamp_min(1.0))
    return w[segment]


def per_centre_mean_distance(
    queries: Tensor, centres: Tensor, idx: Tensor, weights: Tensor, n: int
) -> Tensor:
    """sum_c (weighted mean over c's queries of ||q - C_c||^2); grads reach `centres` only.
    `centres` [B, d] is each query's own centre; gather it with `index_select`, whose
    backward is an `index_add_`, not the slower accumulating `index_put_` of `t[idx]`."""
    dist2 = (queries - centres).pow(2).sum(-1)  # [B]
    won = torch.zeros(n, dtype=weights.dtype, device=weights.device).index_add_(0, idx, weights)
    return (weights * dist2 / won[idx].clamp_min(1e-12)).sum()


class ClusterMemory(nn.Module):
    """Two-level memory of cluster centres, trained online by a clustering loss."""

    def __init__(
        self,
        k1: int,
        k2: int,
        dim: int,
        *,
        hierarchical: bool = True,
        balanced_sampling: bool = True,
        dead_centre_window: int = 200,
        dead_centre_min_usage: float = 0.05,
        recent_queries: int = 4096,
        n_segments: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.k1, self.k2, self.dim = k1, k2, dim
        self.hierarchical = hierarchical
        self.balanced_sampling = balanced_sampling
        self.dead_centre_window = dead_centre_window
        self.dead_centre_min_usage = dead_centre_min_usage
        self.n_segments = n_segments
        self.centres1 = nn.Parameter(torch.empty(k1, dim))
        self.centres2 = nn.Parameter(torch.empty(k1, k2, dim))
        n_leaves = k1 * k2
        f32 = torch.float32
        # Weighted wins per centre in the current window, and in the last full one.
        self.register_buffer("usage1", torch.zeros(k1, dtype=f32))
        self.register_buffer("usage2", torch.zeros(n_leaves, dtype=f32))
        self.register_buffer("prev_usage1", torch.zeros(k1, dtype=f32))
        self.register_buffer("prev_usage2", torch.zeros(n_leaves, dtype=f32))
        self.register_buffer("steps_in_window", torch.zeros((), dtype=torch.long))
        # Ring buffer of recent (normalised, detached) queries and their segments.
        self.register_buffer("recent", torch.zeros(recent_queries, dim, dtype=f32))
        self.register_buffer("recent_segment", torch.zeros(recent_queries, dtype=torch.long))
        self.register_buffer("recent_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("recent_next", torch.zeros((), dtype=torch.long))
        # False until the first training batch seeds the centres from real queries.
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        # Bumped when a top-level unit is re-seeded: whatever other modules stored
        # per unit (UPBE's slots) is stale from then on.
        self.register_buffer("generation", torch.zeros(self.n_slots, dtype=torch.long))
        self.register_buffer("reseeded_total", torch.zeros((), dtype=torch.long))
        # Bumped whenever centres may have been re-seeded (first batch, window close):
        # caches of assignments built before it are stale.
        self.register_buffer("version", torch.zeros((), dtype=torch.long))
        # Seeding and re-seeding draw from this stream (see layers.private_rng).
        self.register_buffer("rng_state", new_rng_state(seed))
        self.reset_parameters()

    # ------------------------------------------------------------------ structure
    @property
    def n_slots(self) -> int:
        """Top-level units: level-1 centres, or every centre of a flat memory."""
        return self.k1 if self.hierarchical else self.k1 * self.k2

    def reset_parameters(self) -> None:
        with torch.no_grad(), private_rng(self.rng_state) as g:
            c1 = normalise(torch.randn(self.k1, self.dim, generator=g))
            kids = c1.unsqueeze(1) + 0.1 * torch.randn(self.k1, self.k2, self.dim, generator=g)
            self.centres1.copy_(c1)
            self.centres2.copy_(normalise(kids))

    def centre_parameters(self) -> list[nn.Parameter]:
        """The parameters that belong in the trainer's centre group (rate rho)."""
        return [self.centres1, self.centres2]

    def leaf_centres(self) -> Tensor:
        return self.centres2.reshape(self.k1 * self.k2, self.dim)  # [K1*K2, d]

    def slot_centres(self) -> Tensor:
        return self.centres1 if self.hierarchical else self.leaf_centres()  # [S, d]

    # ------------------------------------------------------------------ retrieval
    @torch.no_grad()
    def retrieve(self, q: Tensor, top_k: int = 1, with_children: bool = False) -> Retrieval:
        """q: [B, d] normalised queries. Hierarchical search compares K1 + K2 centres per
        query; flat search compares all K1 * K2. `with_children` keeps the winner's
        children as unit vectors in the result (hierarchical only), for a reader that
        attends over them."""
        if self.hierarchical:
            sim1 = q @ normalise(self.centres1).T  # [B, K1]
            top_sim, top_idx = _top(sim1, top_k)
            parent = top_idx[:, 0]
            kids = self.centres2.index_select(0, parent)  # [B, K2, d]
            norms = self.centres2.norm(dim=-1).clamp_min(1e-8)[parent]  # [B, K2]
            children = None
            if with_children:
                children = kids / norms.unsqueeze(-1)
                sim2 = torch.bmm(children, q.unsqueeze(-1)).squeeze(-1)  # [B, K2]
            else:
                # Divide by the children's norms after the product: [B, K2] divisions
                # instead of normalising the gathered [B, K2, d] copy.
                sim2 = torch.bmm(kids, q.unsqueeze(-1)).squeeze(-1) / norms  # [B, K2]
            leaf = parent * self.k2 + sim2.max(dim=1).indices
            comparisons = sim1.shape[1] + sim2.shape[1]
            return Retrieval(parent, leaf, parent, top_idx, top_sim, comparisons, children)
        sim = q @ normalise(self.leaf_centres()).T  # [B, K1*K2]
        top_sim, top_idx = _top(sim, top_k)
        leaf = top_idx[:, 0]
        return Retrieval(leaf // self.k2, leaf, leaf, top_idx, top_sim, sim.shape[1])

    @torch.no_grad()
    def nearest_leaves(self, q: Tensor, n: int) -> Tensor:
        """Indices [B, min(n, K1*K2)] of level-2 centres near each query.

        Hierarchical: the children of the ceil(n / K2) nearest parents, nearest parent
        first; within a parent, its children nearest to the parent's own centre first.
        That order does not depend on the query, so no child is compared with it: K1
        comparisons per query, and no [B, p, K2, d] copy of the children. Flat: the n
        most similar centres."""
        if self.hierarchical:
            p = min(self.k1, math.ceil(n / self.k2))
            _, parents = _top(q @ normalise(self.centres1).T, p)  # [B, p]
            return self.children_by_centrality()[parents].flatten(1)[:, :n]
        sim = q @ normalise(self.leaf_centres()).T  # [B, K1*K2]
        return sim.topk(min(n, sim.shape[1]), dim=1).indices

    @torch.no_grad()
    def children_by_centrality(self) -> Tensor:
        """[K1, K2] leaf indices: each parent's children, nearest to the parent first."""
        sim = torch.einsum("ikd,id->ik", normalise(self.centres2), normalise(self.centres1))
        order = sim.argsort(dim=1, descending=True)  # [K1, K2]
        return torch.arange(self.k1, device=order.device).unsqueeze(1) * self.k2 + order

    # ------------------------------------------------------------------ learning
    def clustering_loss(self, q: Tensor, r: Retrieval, weights: Tensor) -> Tensor:
        """L_clu on detached queries; gradients reach the centres and nothing else."""
        q = q.detach()
        leaves = self.leaf_centres().index_select(0, r.leaf)
        loss = per_centre_mean_distance(q, leaves, r.leaf, weights, self.k1 * self.k2)
        if self.hierarchical:
            parents = self.centres1.index_select(0, r.parent)
            loss = loss + per_centre_mean_distance(q, parents, r.parent, weights, self.k1)
        return loss

    @torch.no_grad()
    def prepare(self, q: Tensor, segment: Tensor | None) -> None:
        """Call at the start of a training step, before retrieval: seeds the centres
        from the first batch, and re-seeds dead centres when a window is complete."""
        if not bool(self.initialised):
            seg = segment if segment is not None else torch.zeros_like(q[:, 0], dtype=torch.long)
            every1 = torch.ones(self.k1, dtype=torch.bool, device=q.device)
            every2 = torch.ones(self.k1 * self.k2, dtype=torch.bool, device=q.device)
            self._reseed(every1, every2, q, seg)
            self.initialised.fill_(True)
            self.reseeded_total.zero_()
            self.version += 1
            self._sync_across_ranks()
            return
        if int(self.steps_in_window) >= self.dead_centre_window:
            dead1, dead2 = self.dead_centres(self.usage1, self.usage2)
            n = int(self.recent_filled)
            if n > 0 and (bool(dead1.any()) or bool(dead2.any())):
                self._reseed(dead1, dead2, self.recent[:n], self.recent_segment[:n])
            # Every rank closes its window on the same step, so all of them sync here
            # (a rank that re-seeded nothing must still join the broadcast).
            self._sync_across_ranks()
            self.prev_usage1.copy_(self.usage1)
            self.prev_usage2.copy_(self.usage2)
            self.usage1.zero_()
            self.usage2.zero_()
            self.steps_in_window.zero_()
            self.version += 1

    @torch.no_grad()
    def observe(self, q: Tensor, r: Retrieval, segment: Tensor | None, weights: Tensor) -> None:
        """Training-step bookkeeping after retrieval: usage counters and recent queries."""
        self.usage1.index_add_(0, r.parent, weights)
        self.usage2.index_add_(0, r.leaf, weights)
        self.steps_in_window += 1
        b, cap = q.shape[0], self.recent.shape[0]
        if b >= cap:
            q, segment = q[-cap:], None if segment is None else segment[-cap:]
            b = cap
        pos = (int(self.recent_next) + torch.arange(b, device=q.device)) % cap
        self.recent[pos] = q
        self.recent_segment[pos] = 0 if segment is None else segment
        self.recent_next.fill_((int(self.recent_next) + b) % cap)
        self.recent_filled.fill_(min(cap, int(self.recent_filled) + b))

    def segment_weights(self, segment: Tensor | None, batch: int) -> Tensor:
        if not self.balanced_sampling or segment is None:
            return torch.ones(batch, device=self.centres1.device)
        return balanced_segment_weights(segment, batch, self.n_segments).to(self.centres1.device)

    def dead_centres(self, usage1: Tensor, usage2: Tensor) -> tuple[Tensor, Tensor]:
        """Masks [K1], [K1*K2] of centres whose usage share is below the threshold.
        Level-2 shares are taken within the parent; a flat memory has no level 1."""
        k1, k2, thr = self.k1, self.k2, self.dead_centre_min_usage
        total = usage1.sum().clamp_min(1e-12)
        if not self.hierarchical:
            dead2 = usage2 / total < thr / (k1 * k2)
            return torch.zeros_like(usage1, dtype=torch.bool), dead2
        dead1 = usage1 / total < thr / k1
        within = usage2.view(k1, k2) / usage1.clamp_min(1e-12).unsqueeze(1)  # [K1, K2]
        dead2 = (within < thr / k2) | dead1.unsqueeze(1)
        return dead1, dead2.flatten()

    def _pool_weights(self, segment: Tensor) -> Tensor:
        """Sampling weight of each pooled query: segment-balanced when `balanced_sampling`."""
        if not self.balanced_sampling:
            return torch.ones(segment.shape[0], device=segment.device)
        counts = torch.bincount(segment, minlength=self.n_segments).to(torch.float32)
        return 1.0 / counts[segment]

    def _kmeanspp(
        self, pool: Tensor, weight: Tensor, n: int, live: Tensor | None, g: torch.Generator
    ) -> Tensor:
        """n new centres [n, d] from the pool by greedy k-means++ (Arthur & Vassilvitskii
        2007; the greedy variant as in scikit-learn): each pick is drawn with probability
        ~ weight * D^2 to the nearest centre so far, best of a few trials. Random picks
        would put several centres in one dense cluster and none in a sparse one, and
        online k-means cannot undo that."""
        trials = 2 + int(math.log(max(n, 2)))
        if live is not None and live.shape[0]:
            d2 = (2 - 2 * (pool @ normalise(live).T)).clamp_min(0).amin(dim=1)  # [R]
        else:
            d2 = torch.full((pool.shape[0],), 4.0, device=pool.device)
        picks = []
        for _ in range(n):
            p = (weight * d2).cpu()
            if float(p.sum()) <= 0:  # every query already sits on a centre
                p = weight.cpu()
            cand = torch.multinomial(p, trials, replacement=True, generator=g)
            cand = cand.to(pool.device)
            cand_d2 = (2 - 2 * (pool[cand] @ pool.T)).clamp_min(0)  # [trials, R]
            new_d2 = torch.minimum(d2.unsqueeze(0), cand_d2)
            best = (weight * new_d2).sum(dim=1).argmin()
            picks.append(cand[best])
            d2 = new_d2[best]
        return pool[torch.stack(picks)]

    def _jitter(self, x: Tensor, g: torch.Generator) -> Tensor:
        # Two centres re-seeded from the same query must not stay identical.
        noise = torch.randn(x.shape, generator=g).to(x.device)
        return normalise(x + 0.02 * noise)

    def _reseed(self, dead1: Tensor, dead2: Tensor, pool: Tensor, pool_seg: Tensor) -> None:
        with private_rng(self.rng_state) as g:
            self._reseed_from(dead1, dead2, pool, pool_seg, g)

    def _reseed_from(
        self, dead1: Tensor, dead2: Tensor, pool: Tensor, pool_seg: Tensor, g: torch.Generator
    ) -> None:
        c1, leaves = self.centres1.data, self.centres2.data.view(-1, self.dim)
        dev = pool.device
        pool_w = self._pool_weights(pool_seg)
        if self.hierarchical:
            idx1 = dead1.nonzero().squeeze(1)
            if idx1.numel():
                live = c1[~dead1]
                c1[idx1] = self._jitter(self._kmeanspp(pool, pool_w, idx1.numel(), live, g), g)
                self.generation[idx1] += 1
                self.usage1[idx1] = 0.0
                # A new parent gets all-new children, drawn from its own queries below.
                dead2 = dead2 | dead1.repeat_interleave(self.k2)
            idx2 = dead2.nonzero().squeeze(1)
            if idx2.numel():
                # Children re-seed from recent queries routed to their parent; a parent
                # with none gets children scattered around its own centre.
                routed = (pool @ normalise(c1).T).argmax(1)  # [R]
                order = routed.argsort()
                counts = torch.bincount(routed, minlength=self.k1)
                starts = counts.cumsum(0) - counts
                parent = idx2 // self.k2
                u = torch.rand(idx2.numel(), generator=g).to(dev)
                n_own = counts[parent]
                pick = starts[parent] + (u * n_own).long().clamp_max((n_own - 1).clamp_min(0))
                from_pool = pool[order[pick.clamp_max(pool.shape[0] - 1)]]
                fallback = normalise(c1[parent])
                seed = torch.where((n_own > 0).unsqueeze(1), from_pool, fallback)
                leaves[idx2] = self._jitter(seed, g)
                self.usage2[idx2] = 0.0
            self.reseeded_total += idx1.numel() + idx2.numel()
        else:
            idx2 = dead2.nonzero().squeeze(1)
            if idx2.numel():
                live = leaves[~dead2]
                leaves[idx2] = self._jitter(self._kmeanspp(pool, pool_w, idx2.numel(), live, g), g)
                self.generation[idx2] += 1
                self.usage2[idx2] = 0.0
                self.reseeded_total += idx2.numel()

    def _sync_across_ranks(self) -> None:
        # Re-seeding writes parameters in place from local data; under DDP every rank
        # must continue from the same centres, so rank 0's copy wins.
        if dist.is_available() and dist.is_initialized():
            for t in (self.centres1.data, self.centres2.data, self.generation):
                dist.broadcast(t, src=0)

    # ------------------------------------------------------------------ health
    @torch.no_grad()
    def metrics(self, prefix: str) -> dict[str, float]:
        """Usage entropy (normalised to [0, 1]), dead centres, re-seeds — over the current
        and the last complete window."""
        u1 = (self.usage1 + self.prev_usage1).float()
        u2 = (self.usage2 + self.prev_usage2).float()
        top = u1 if self.hierarchical else u2
        out = {
            f"{prefix}_usage_entropy": _normalised_entropy(top),
            f"{prefix}_leaf_usage_entropy": _normalised_entropy(u2),
            f"{prefix}_reseeded_total": float(self.reseeded_total),
        }
        if float(u1.sum()) > 0:
            dead1, dead2 = self.dead_centres(u1, u2)
            out[f"{prefix}_dead_centres"] = float(dead1.sum() if self.hierarchical else dead2.sum())
            out[f"{prefix}_dead_leaves"] = float(dead2.sum())
        else:
            out[f"{prefix}_dead_centres"] = float("nan")
            out[f"{prefix}_dead_leaves"] = float("nan")
        return out


def _normalised_entropy(counts: Tensor) -> float:
    total = counts.sum()
    if float(total) <= 0 or counts.numel() < 2:
        return float("nan")
    p = counts / total
    h = -(p * torch.log(p.clamp_min(1e-30))).sum()
    return float(h / math.log(counts.numel()))


# ---------------------------------------------------------------------- persistence
def save_memories(path: str | Path, memories: dict[str, nn.Module], config: dict) -> None:
    """Every memory's parameters and buffers in one safetensors file; the config that
    made them rides along as JSON in the file's metadata."""
    tensors = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in memories.items()
        for key, value in module.state_dict().items()
    }
    metadata = {"format": MEMORY_FORMAT, "config": json.dumps(config, sort_keys=True)}
    save_file(tensors, str(path), metadata=metadata)


def load_memories(path: str | Path) -> tuple[dict[str, dict[str, Tensor]], dict]:
    """-> ({memory name: state dict}, config dict that made them)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != MEMORY_FORMAT:
        raise ValueError(f"{path}: not a cluster-memory file (format={metadata.get('format')!r})")
    grouped: dict[str, dict[str, Tensor]] = {}
    for key, value in load_file(str(path)).items():
        name, _, rest = key.partition(".")
        grouped.setdefault(name, {})[rest] = value
    return grouped, json.loads(metadata["config"])
