"""Residual head fitted on held-out rows: reset, fitted with the base held fixed, on the
rows of one half of the users only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import train_ranker

from duia_spark.config import ConfigError, TrainConfig
from duia_spark.model.ranker import build_ranker
from duia_spark.training.residual_refit import fit_users, refit_residual_head


def _trained_residual_model(make_config, make_batch):
    model = build_ranker(make_config(variant="ple+duia", enhancement_fusion="residual"))
    train_ranker(model, make_batch)
    return model


def _learnable_day(model, make_batch, n_batches: int = 6):
    """Batches whose labels follow the first user feature: a pattern the frozen base,
    trained on random labels, has not learnt and the head can read from its context."""
    batches = []
    for i in range(n_batches):
        b = make_batch(model.cfg, 128, seed=100 + i)
        b["labels"] = (b["user_dense"][:, :1] > 0).float().expand_as(b["labels"]).clone()
        batches.append(b)
    return batches


def test_the_users_split_in_two_halves_fixed_per_user_and_alike_in_numpy_and_torch():
    users = np.arange(1, 20001)
    fit = fit_users(users)
    assert 0.45 < fit.mean() < 0.55
    assert np.array_equal(fit, fit_users(users.copy()))
    assert np.array_equal(fit, fit_users(torch.as_tensor(users)).numpy())
    # neighbouring indices (ids are numbered in order of arrival) do not alternate
    assert 0.4 < np.mean(fit[1:] == fit[:-1]) < 0.6


def test_the_refit_head_learns_what_the_base_misses_and_the_base_does_not_move(
    make_config, make_batch
):
    model = _trained_residual_model(make_config, make_batch)
    base_before = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if not k.startswith("residual.")
    }
    batches = _learnable_day(model, make_batch)

    record = refit_residual_head(model, lambda epoch: batches, epochs=30, lr=1e-2)

    assert record["residual_refit/loss"] < record["residual_refit/loss_base"] - 0.05
    assert 0 < record["residual_refit/rows"] < 6 * 128  # the fitting half only
    after = model.state_dict()
    for k, v in base_before.items():
        assert torch.equal(after[k], v), f"{k} changed while the head was refitted"
    assert model.training  # the caller's mode is restored
    assert all(p.requires_grad for p in model.parameters())


def test_rows_of_the_judging_half_never_reach_the_head(make_config, make_batch):
    model = _trained_residual_model(make_config, make_batch)
    batches = _learnable_day(model, make_batch)
    for b in batches:  # every row belongs to a user of the judging half
        judging = torch.nonzero(~fit_users(torch.arange(1, model.cfg.n_users))).flatten() + 1
        b["user_idx"] = judging[torch.arange(len(b["user_idx"])) % len(judging)]

    record = refit_residual_head(model, lambda epoch: batches, epochs=3, lr=1e-2)

    assert record == {}  # no row to fit on
    last = model.residual.net[-1]
    assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    model.eval()
    out = model(batches[0])
    assert torch.equal(out["logits"], out["base_logits"])  # the reset head serves the base


def test_residual_fit_is_checked_by_name():
    with pytest.raises(ConfigError, match="train.residual_fit"):
        TrainConfig(residual_fit="validation")
    with pytest.raises(ConfigError, match="train.residual_refit_epochs"):
        TrainConfig(residual_refit_epochs=0)
