"""Small building blocks shared by PLE and DUIA: stacked linear layers, masked pooling,
target attention."""

from __future__ import annotations

import math

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
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


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
        keys: Tensor | tuple[Tensor, ...],
        mask: Tensor | tuple[Tensor, ...],
    ) -> Tensor:
        """target: [B, dq]; keys: [B, L, d] with mask [B, L] bool, or tuples of such
        segments pooled by one softmax (no [B, sum L, d] concatenation) -> [B, d]."""
        if isinstance(keys, Tensor):
            keys, mask = (keys,), (mask,)
        q = self.query(target)  # [B, d]
        scores = torch.cat([torch.einsum("bd,bld->bl", q, k) for k in keys], dim=1)
        valid = torch.cat(mask, dim=1)  # [B, sum L]
        scores = (scores * self.scale).masked_fill(~valid, torch.finfo(scores.dtype).min)
        # Multiplying by the mask zeroes rows with nothing to pool (their softmax
        # would otherwise spread evenly over padding); -inf would give NaN there.
        weights = torch.softmax(scores, dim=1) * valid.to(scores.dtype)
        pooled = None
        for w, k in zip(weights.split([k.shape[1] for k in keys], dim=1), keys, strict=True):
            part = torch.einsum("bl,bld->bd", w, k)
            pooled = part if pooled is None else pooled + part
        return pooled


def normalise(x: Tensor, eps: float = 1e-8) -> Tensor:
    return F.normalize(x, dim=-1, eps=eps)
