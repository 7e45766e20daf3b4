"""Cluster outcomes: what users of a cluster did with items of a cluster, read before written."""

from __future__ import annotations

import math

import pytest
import torch

from duia_spark.model.cluster_outcomes import ClusterOutcomeMemory
from duia_spark.model.ghca import ClusterMemory
from duia_spark.model.ranker import DuiaRanker
from tests.model.conftest import random_batch, tiny_config


def _outcomes(prior: float = 1.0, half_life: int = 0) -> ClusterOutcomeMemory:
    users, items = ClusterMemory(3, 2, 4, seed=0), ClusterMemory(2, 2, 4, seed=1)
    return ClusterOutcomeMemory(users, items, n_tasks=2, prior=prior, half_life_steps=half_life)


def test_an_empty_table_reads_zero_log_odds():
    outcomes = _outcomes()
    features = outcomes(torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert features.shape == (2, outcomes.width)
    assert torch.allclose(features, torch.zeros_like(features), atol=1e-5)


def test_a_cluster_that_liked_items_of_a_kind_reads_a_positive_lift_for_them_only():
    outcomes = _outcomes(prior=1.0)
    users = torch.tensor([0] * 8 + [1] * 8 + [2] * 4)
    items = torch.tensor([1] * 16 + [0] * 4)
    labels = torch.zeros(20, 2)
    labels[:8, 0] = 1.0  # user unit 0 clicks every item of unit 1, user unit 1 none
    labels[:, 1] = float("nan")  # task 2 unknown on every row: counted nowhere
    outcomes.observe(users, items, labels)

    f = outcomes(torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 1, 0]))
    lift, item_vs_log = f[:, 0], f[:, 2]
    assert lift[0] > 0.5 and lift[1] < -0.5  # the clicking and the non-clicking cluster
    assert lift[2] == pytest.approx(0.0, abs=1e-5)  # a cluster never seen with unit 1
    assert lift[3] == pytest.approx(0.0, abs=1e-5)  # user unit 0 never saw item unit 0
    log_rate = (8 + 1) / (20 + 2)
    unit1 = (8 + log_rate) / (16 + 1)  # shrunk toward the log with 1 pseudo-exposure

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    assert item_vs_log[0] == pytest.approx(logit(unit1) - logit(log_rate), abs=1e-4)
    assert item_vs_log[1] == pytest.approx(item_vs_log[0])  # the item unit's, for everyone
    cell0 = (8 + unit1) / (8 + 1)
    assert lift[0] == pytest.approx(logit(cell0) - logit(unit1), abs=1e-4)
    assert f[:, 1].abs().max() < 1e-5 and f[:, 3].abs().max() < 1e-5  # unknown task
    assert f[0, 4] == pytest.approx(math.log1p(8.0)) and f[2, 4] == 0.0  # cell exposures
    assert f[2, 5] == pytest.approx(math.log1p(16.0))  # item unit exposures


def test_counts_fade_with_the_half_life_and_a_reseeded_unit_is_forgotten():
    outcomes = _outcomes(half_life=1)
    one = torch.ones(1, 2)
    outcomes.observe(torch.tensor([0]), torch.tensor([0]), one)
    outcomes.observe(torch.tensor([1]), torch.tensor([1]), one)
    assert outcomes.exposures.view(3, 2, 2)[0, 0].tolist() == [0.5, 0.5]
    outcomes.memories[0].generation[1] += 1  # user unit 1 re-seeded
    outcomes.observe(torch.tensor([2]), torch.tensor([0]), one)
    assert outcomes.exposures.view(3, 2, 2)[1, 1].tolist() == [0.0, 0.0]
    assert outcomes.exposures.view(3, 2, 2)[0, 0].tolist() == [0.25, 0.25]


def test_the_ranker_reads_before_it_writes_and_keeps_the_table_with_its_memories(tmp_path):
    cfg = tiny_config(variant="ple+duia", cluster_outcomes=True, cluster_outcome_half_life=0)
    model = DuiaRanker(cfg)
    read: list[torch.Tensor] = []
    model.outcomes.register_forward_hook(lambda m, args, out: read.append(out.detach()))
    batch = random_batch(cfg, batch=32)
    model.train()
    model(batch)
    assert model.outcomes.exposures.sum() == 32 * len(cfg.tasks)  # every row counted...
    assert read[0].abs().max() == 0.0  # ... after it read an empty table
    model(batch)
    assert read[1].abs().max() > 0.0  # the next step reads what the first one wrote
    before = model.outcomes.exposures.clone()
    model.eval()
    with torch.no_grad():
        model(batch)
    assert torch.equal(model.outcomes.exposures, before)  # serving never writes

    path = tmp_path / "memory.safetensors"
    model.save_memory(path)
    other = DuiaRanker(cfg)
    assert "outcomes" in other.load_memory(path)
    assert torch.equal(other.outcomes.positives, model.outcomes.positives)
    assert model.cluster_metrics()["outcome_cells_seen"] > 0


def test_plain_ple_and_variants_without_the_item_memory_build_no_table():
    for variant in ("ple", "ple+uie+upbe"):
        model = DuiaRanker(tiny_config(variant=variant, cluster_outcomes=True))
        assert model.outcomes is None


def test_a_prior_of_zero_is_refused():
    with pytest.raises(ValueError, match="cluster_outcome_prior"):
        tiny_config(cluster_outcomes=True, cluster_outcome_prior=0.0)
