"""Residual fusion: DUIA's vectors correct a base ranker that never reads them.

With `enhancement_fusion: residual` the PLE ranker is built and trained exactly as
variant "ple" builds and trains it: its input holds no DUIA vector, its history
attention has no enhanced keys, and only its own task losses reach it. A small head
reads the DUIA vectors beside the (detached) base input and base logits and adds one
residual logit per task:

    logit = base(x) + head([enhancement, x, base(x)])

The head learns from the loss of that sum with the base held fixed (its gradient
stops at the base). Its last layer starts at zero, so an untrained head serves the
base ranker's scores. What the memories add is then a correction the head has to
earn against a ranker that learned without them.

`segment_on` (saved with the weights) holds, per activity segment, whether the head's
correction is served there: training sets it from the validation day's evidence
(training/residual_gate.py), so a segment where the head does not beat the base is
served the base ranker's score.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from duia_spark.model.layers import batch_norm_rows, mlp


class EnhancementResidual(nn.Module):
    """[B, e] enhancement (batch-normalised by `norm`), [B, c] base input, [B, T] base
    logits -> [B, T] residual logits. The base's tensors are detached here."""

    def __init__(
        self, enhancement_dim: int, context_dim: int, n_tasks: int, hidden: int, n_segments: int
    ) -> None:
        super().__init__()
        self.register_buffer("segment_on", torch.ones(n_segments))
        self.norm = nn.BatchNorm1d(enhancement_dim)
        self.net = mlp(enhancement_dim + context_dim + n_tasks, hidden, n_tasks)
        self._zero_output()

    def _zero_output(self) -> None:
        """A zero last layer: the head adds nothing, the base ranker's scores are served."""
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, enhancement: Tensor, context: Tensor, base_logits: Tensor) -> Tensor:
        features = [enhancement, context.detach(), base_logits.detach()]
        return self.net(torch.cat(features, dim=1))

    def correction(
        self, enhancement: Tensor, context: Tensor, base_logits: Tensor, segment: Tensor | None
    ) -> Tensor:
        """The residual logits [B, T] served: forward() on the batch-normalised
        enhancement, zero in the segments the gate switched off."""
        residual = self(batch_norm_rows(self.norm, enhancement), context, base_logits)
        if bool(self.segment_on.all()):
            return residual
        if segment is None:
            raise ValueError(
                "this model's residual head serves some activity segments only "
                "(train.residual_gate): batch['segment'] is needed to score it"
            )
        return residual * self.segment_on[segment].unsqueeze(1)
