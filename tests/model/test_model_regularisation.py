"""The base ranker's regularisers act as configured, and only in training."""

from __future__ import annotations

import torch

from duia_spark.model.ranker import build_ranker
from tests.tiny_model import random_batch, tiny_config


def test_dropout_acts_in_training_and_never_when_scoring():
    cfg = tiny_config(variant="ple", dropout=0.5)
    model = build_ranker(cfg)
    batch = random_batch(cfg, 32, seed=2)
    first, second = model.predict(batch), model.predict(batch)
    assert torch.equal(first, second), "two scorings of one batch agree"
    model.train()
    with torch.no_grad():
        a, b = model(batch)["logits"], model(batch)["logits"]
    assert not torch.allclose(a, b), "training forwards drop different units"


def test_dropout_reaches_every_expert_level_and_the_towers_at_the_configured_rate():
    model = build_ranker(tiny_config(variant="ple", dropout=0.3))
    rates = [level.dropout.p for level in model.ple.levels] + [model.ple.dropout.p]
    assert rates == [0.3] * (len(model.ple.levels) + 1)


def test_without_dropout_training_forwards_of_one_batch_agree():
    cfg = tiny_config(variant="ple", dropout=0.0)
    model = build_ranker(cfg)
    batch = random_batch(cfg, 32, seed=2)
    model.train()
    with torch.no_grad():
        assert torch.equal(model(batch)["logits"], model(batch)["logits"])
