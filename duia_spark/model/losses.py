"""The ranker's task losses, and the scaling of the play-time target.

Binary tasks (click, long_view, like, ...) learn with BCE on their logits. A regression
task (play time) learns a standardised target: log1p(play time in ms) is about 9 with a
spread of about 3, so an unscaled head starts with an MSE near 80 and its gradients
swamp the binary tasks in the shared experts. The target's running mean and std —
tracked in training like BatchNorm's, saved with the weights as the ranker's
`target_mean` / `target_std` / `target_tracked` buffers — map the head's output back to
label units at serving.

A NaN label means the signal is unknown for that row: the row is left out of that
task's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# A regression's target scale, (mean, std) of its log1p; None for a binary task.
TargetScale = tuple[Tensor, Tensor] | None


def log_target(y: Tensor) -> Tensor:
    """A regression label (play time in ms) as its head learns it: log1p, negatives as 0."""
    return torch.log1p(y.clamp_min(0.0))


def task_loss(out: Tensor, y: Tensor, scale: TargetScale = None) -> Tensor:
    """One task's loss over the rows whose label is known: BCE on the logits, or (with a
    `scale`) MSE against the standardised log1p target."""
    known = ~torch.isnan(y)
    if not bool(known.any()):
        return out.sum() * 0.0  # keeps the graph whole (DDP) when a signal is missing
    out, y = out[known], y[known]
    if scale is None:
        return F.binary_cross_entropy_with_logits(out, y)
    mean, std = scale
    return F.mse_loss(out, (log_target(y) - mean) / std)


def weighted_task_losses(
    logits: Tensor,
    labels: Tensor,
    tasks: list[str],
    weights: Tensor,
    scales: list[TargetScale],
) -> tuple[Tensor, dict[str, Tensor]]:
    """logits, labels [B, T] -> (Σ weight × task loss, each task's loss by name)."""
    parts: dict[str, Tensor] = {}
    total = logits.new_zeros(())
    for t, name in enumerate(tasks):
        parts[name] = task_loss(logits[:, t], labels[:, t], scales[t])
        total = total + weights[t] * parts[name]
    return total, parts


@torch.no_grad()
def track_targets_(
    labels: Tensor,
    regression: list[bool],
    mean: Tensor,
    std: Tensor,
    tracked: Tensor,
    momentum: float = 0.01,
) -> None:
    """Update, in place, the running mean and std [T] of each regression's log1p target:
    the first batch with two known values sets them, later batches move them by
    `momentum`. `tracked` [T] bool records which were set."""
    for t, is_regression in enumerate(regression):
        y = labels[:, t]
        target = log_target(y[~torch.isnan(y)])
        if not is_regression or target.numel() < 2:
            continue
        batch_mean, batch_std = target.mean(), target.std(unbiased=False).clamp_min(1e-3)
        if not bool(tracked[t]):
            mean[t], std[t] = batch_mean, batch_std
            tracked[t] = True
        else:
            mean[t].lerp_(batch_mean, momentum)
            std[t].lerp_(batch_std, momentum)


def to_label_units(logits: Tensor, scales: list[TargetScale]) -> Tensor:
    """[B, T] logits -> probabilities for binary tasks, play time in ms for regressions."""
    cols = []
    for t, scale in enumerate(scales):
        z = logits[:, t]
        if scale is None:
            cols.append(torch.sigmoid(z))
        else:
            mean, std = scale
            cols.append(torch.expm1((z * std + mean).clamp_min(0.0)))
    return torch.stack(cols, dim=1)
