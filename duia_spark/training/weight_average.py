"""The running mean of the ranker's weights over the ends of its epochs.

Later epochs trade AUC for GAUC: the id embeddings go on learning each user's taste
(GAUC up) while the network overfits what it has seen (AUC down). The mean of the
weights after epochs 1..e (stochastic weight averaging, one snapshot per epoch) keeps
most of the first and most of the second (docs/quality.md). The trainer validates it
beside the epoch's own weights and keeps whichever validates better.

Averaged: the network's parameters and batch-norm statistics. Taken from the latest
epoch: the cluster memories (centres, slots and their bookkeeping: k-means state, not
weights) and every integer or bookkeeping buffer. The query tower is averaged with the
network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from duia_spark.model.ranker import DuiaRanker


def averaged_keys(model: DuiaRanker) -> list[str]:
    """state_dict keys of the weights that are averaged."""
    centres = {id(p) for p in model.centre_parameters()}
    keys = [name for name, p in model.named_parameters() if id(p) not in centres]
    for prefix, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            keys += [f"{prefix}.running_mean", f"{prefix}.running_var"]
    return keys


class WeightAverage:
    """`update(model)` at the end of each epoch; `state_dict(model)` is the model's state
    with the averaged weights in place of its own."""

    def __init__(self, model: DuiaRanker) -> None:
        self.keys = averaged_keys(model)
        self.count = 0
        self.mean: dict[str, Tensor] = {}

    @torch.no_grad()
    def update(self, model: DuiaRanker) -> None:
        state = model.state_dict()
        self.count += 1
        for k in self.keys:
            w = state[k].detach().float()
            if k not in self.mean:
                self.mean[k] = w.clone()
            else:
                self.mean[k] += (w - self.mean[k]) / self.count

    def state_dict(self, model: DuiaRanker) -> dict[str, Tensor]:
        if not self.count:
            raise ValueError("WeightAverage.state_dict() before any update()")
        out = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for k, v in self.mean.items():
            out[k] = v.to(dtype=out[k].dtype, device=out[k].device)
        return out

    def checkpoint(self) -> dict:
        return {"count": self.count, "mean": {k: v.cpu() for k, v in self.mean.items()}}

    def restore(self, saved: dict, device: torch.device | str) -> None:
        self.count = int(saved["count"])
        self.mean = {k: v.to(device) for k, v in saved["mean"].items()}
