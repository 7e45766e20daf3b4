"""Residual fusion, head fitted on held-out rows: the head learns the base ranker's
errors on rows the base never trained on.

Trained beside the base (`train.residual_fit: train`), the head sees from the second
epoch on rows the base has already fitted: their residual is near zero and holds little
of what the base will get wrong on a new day. With `residual_fit: held_out`, after the
base's weights are chosen, the head is reset and fitted, with the base held fixed, on
the validation day's rows of one half of its users (`fit_users`), which the base has
never trained on — its errors there are the kind it makes when serving. The residual
gate then judges the head on the other half only, rows the head has not seen either.

The halves are drawn by a hash of the user index, so a user's rows stay together and
the split is the same on every run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from duia_spark.model.ranker import DuiaRanker

_GOLDEN = 0x9E3779B1  # a multiplicative hash: neighbouring user indices fall apart


def fit_users(user_idx: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """True for the users whose validation rows fit the head, False for those that judge
    it (about half each, fixed per user index)."""
    mixed = (user_idx * _GOLDEN) % (1 << 32)
    return (mixed >> 16) % 2 == 0


@contextlib.contextmanager
def _only_head_learns(model: DuiaRanker) -> Iterator[None]:
    """Within: the base ranker and memories are frozen and in eval mode; only the head
    has gradients and updates its batch-norm statistics."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    model.residual.train()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("residual."))
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)


def refit_residual_head(
    model: DuiaRanker,
    batches: Callable[[int], Iterable[dict]],
    epochs: int,
    lr: float,
) -> dict[str, float]:
    """Reset the residual head and fit it on the rows of `fit_users` in `batches(epoch)`
    (one pass over the held-out day per call), the base held fixed. -> the head's loss
    and the base's on those rows in the last pass (`residual_refit/loss`, `.../base`),
    and the rows it was fitted on."""
    if model.residual is None:
        raise ValueError("refitting the residual head needs model.enhancement_fusion: residual")
    model.residual.reset()
    optimizer = torch.optim.Adam(model.residual.parameters(), lr=lr)
    record: dict[str, float] = {}
    with _only_head_learns(model):
        for epoch in range(epochs):
            head_sum, base_sum, rows_seen, steps = 0.0, 0.0, 0, 0
            for batch in batches(epoch):
                fit = fit_users(batch["user_idx"])
                if not bool(fit.any()):
                    continue
                labels = batch["labels"].float().masked_fill(~fit.unsqueeze(1), float("nan"))
                fit_batch = {**batch, "labels": labels}  # the judging half's labels: unknown
                _, parts = model.ranking_loss(fit_batch, model(fit_batch))
                loss = parts["residual"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                head_sum += float(loss.detach())
                base_sum += float(parts["residual_base"])
                rows_seen += int(fit.sum())
                steps += 1
            if steps:
                record = {
                    "residual_refit/loss": head_sum / steps,
                    "residual_refit/loss_base": base_sum / steps,
                    "residual_refit/rows": float(rows_seen),
                }
    return record
