"""Small building blocks shared by PLE and DUIA: stacked linear layers, masked pooling,
target attention, batch norm that accepts one row."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StackedLinear(nn.Module):
    """`n` independent linear maps held as one weight [n, in, out] and run as one einsum.

    PLE has many small experts, gates and towers; a Python loop over `nn.Linear`s
    launches one kernel per module, one batched contraction launches one in total.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same scheme as nn.Linear, applied to each of the n maps.
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, in] (one input shared by all n maps) or [B, n, in] -> [B, n, out]."""
        if x.dim() == 2:
            out = torch.einsum("bi,nio->bno", x, self.weight)
        else:
            out = torch.einsum("bni,nio->bno", x, self.weight)
        return out + self.bias


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """x: [B, L, d], mask: [B, L] bool -> [B, d]; rows with no valid position give 0."""
    m = mask.to(x.dtype).unsqueeze(1)  # [B, 1, L]: one product, no masked [B, L, d] copy
    return torch.bmm(m, x).squeeze(1) / m.sum(2).clamp_min(1.0)


class TargetAttention(nn.Module):
    """DIN-style pooling of a sequence with the target item as the query.

    Scaled dot product between a projection of the target and each key; padded
    positions get zero weight and a row with no valid position pools to a zero
    vector (never the mean of padding).
    """

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, key_dim, bias=False)
        self.scale = 1.0 / math.sqrt(key_dim)

    def forward(
        self,
        target: Tensor,
        keys: Tensor,
        mask: Tensor,
        shared: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """target [B, dq], keys [B, L, d], mask [B, L] bool -> [B, d].

        `shared = (table [N, d], index [B, L2], mask [B, L2])` adds L2 more keys per row
        that are rows of a small shared table (e.g. memory centres), pooled by the same
        softmax. They are scored and pooled with two [B, N] x [N, d] products instead of
        gathering a [B, L2, d] copy of the table.
        """
        q = self.query(target)  # [B, d]
        scores = torch.einsum("bd,bld->bl", q, keys)  # [B, L]
        valid = mask
        if shared is not None:
            table, index, shared_mask = shared
            table_scores = q @ table.T  # [B, N]
            scores = torch.cat([scores, table_scores.gather(1, index)], dim=1)  # [B, L+L2]
            valid = torch.cat([mask, shared_mask], dim=1)
        scores = (scores * self.scale).masked_fill(~valid, torch.finfo(scores.dtype).min)
        # Multiplying by the mask zeroes rows with nothing to pool (their softmax
        # would otherwise spread evenly over padding); -inf would give NaN there.
        weights = torch.softmax(scores, dim=1) * valid.to(scores.dtype)
        own = weights[:, : keys.shape[1]]
        pooled = torch.einsum("bl,bld->bd", own, keys)
        if shared is not None:
            table, index, _ = shared
            per_row = torch.zeros_like(table_scores).scatter_add(
                1, index, weights[:, keys.shape[1] :]
            )  # [B, N]: each row's attention mass on each table entry
            pooled = pooled + per_row @ table
        return pooled


def batch_norm_rows(norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """`norm(x)`, also for a training batch of one row: batch statistics need two rows, so
    a lone row is standardised by the running statistics, which it leaves as they are."""
    if norm.training and x.shape[0] == 1:
        return F.batch_norm(
            x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
        )
    return norm(x)


def normalise(x: Tensor, eps: float = 1e-8) -> Tensor:
    return F.normalize(x, dim=-1, eps=eps)


def new_rng_state(seed: int) -> Tensor:
    return torch.Generator().manual_seed(seed).get_state()


@contextmanager
def private_rng(state: Tensor) -> Iterator[torch.Generator]:
    """A CPU generator resumed from `state` (a module buffer) and written back to it on
    exit. The module's random stream then lives in its state dict: a checkpoint
    resumes it exactly, DDP broadcasts it, and nobody else's draws move it."""
    g = torch.Generator()
    g.set_state(state.detach().cpu())
    try:
        yield g
    finally:
        state.copy_(g.get_state())
