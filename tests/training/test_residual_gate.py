"""The residual gate: the head serves only the segments where it beat the base on D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_model import single_thread_torch, train_ranker  # noqa: F401  (autouse: one thread)

from duia_spark.data.schema import SEGMENT_INDEX
from duia_spark.model.ranker import build_ranker
from duia_spark.training.metrics import ScoredRows
from duia_spark.training.residual_gate import (
    base_ranker_only,
    gate_evidence,
    gate_residual_head,
    metric_for_segment,
    metric_tasks,
    user_ranking_gain_p_value,
)

USERS_PER_SEGMENT, ROWS_PER_USER = 60, 6


def _validation_day(n_tasks: int, seed: int = 0):
    """60 users per segment, 6 labelled rows each; the base scores 0.5 + noise."""
    rng = np.random.default_rng(seed)
    n = 3 * USERS_PER_SEGMENT * ROWS_PER_USER
    users = np.repeat(np.arange(3 * USERS_PER_SEGMENT), ROWS_PER_USER)
    segments = users // USERS_PER_SEGMENT
    labels = (rng.random((n, n_tasks)) < 0.4).astype(np.float64)
    base = np.clip(0.5 + 0.2 * rng.standard_normal((n, n_tasks)), 0.01, 0.99)
    return users, segments, labels, base


def _rows(users, segments, labels, scores) -> ScoredRows:
    return ScoredRows(users, segments, labels, scores, np.ones_like(labels, dtype=bool))


def _predict_for(model, base_rows: ScoredRows, head_rows: ScoredRows):
    """predict() of the gate: the head's rows while the model serves its head."""
    return lambda: head_rows if model.residual_served else base_rows


def _trained_residual_model(make_config, make_batch):
    model = build_ranker(make_config(variant="ple+duia", enhancement_fusion="residual"))
    train_ranker(model, make_batch)
    return model.eval()


def test_a_per_segment_metric_is_read_from_the_selection_metric():
    assert metric_for_segment("auc/click/all+gauc/long_view/all", "low") == (
        "auc/click/low+gauc/long_view/low"
    )


def test_the_tasks_of_a_selection_metric_are_read_once_each():
    assert metric_tasks("auc/click/all+gauc/click/all+auc/like/all") == ["click", "like"]


def test_the_head_is_switched_off_where_the_base_alone_validates_better(make_config, make_batch):
    model = _trained_residual_model(make_config, make_batch)
    users, segments, labels, base = _validation_day(len(model.cfg.tasks))
    toward = np.where(labels == 1, 1.0, -1.0) * 0.15  # towards each row's label
    head = base.copy()
    head[segments == 0] += toward[segments == 0]  # low: better for every user
    head[segments == 1] -= toward[segments == 1]  # mid: worse
    head = np.clip(head, 0.01, 0.99)  # high: unchanged
    base_rows, head_rows = (
        _rows(users, segments, labels, base),
        _rows(users, segments, labels, head),
    )

    gate, served = gate_residual_head(
        model, _predict_for(model, base_rows, head_rows), "auc/click/all", 0.002, 0.05
    )
    assert [gate[f"residual_gate/{s}/kept"] for s in ("low", "mid", "high")] == [1.0, 0.0, 0.0]
    assert gate["residual_gate/low/with_head"] > gate["residual_gate/low/base"] + 0.002
    assert gate["residual_gate/low/p_users"] < 0.001
    assert 40 <= gate["residual_gate/low/users"] <= USERS_PER_SEGMENT  # both classes on D
    assert gate["residual_gate/mid/p_users"] > 0.5
    # The train log's evidence: one line per segment, with both values and the verdict.
    low, mid, high = gate_evidence(gate, "auc/click/all")
    assert low.startswith("low: auc/click/low ") and low.endswith("→ served")
    assert f"{gate['residual_gate/low/with_head']:.4f} with the head" in low
    assert mid.startswith("mid: auc/click/mid ") and mid.endswith("→ off")
    assert high.startswith("high: ") and "(+0.0000)" in high and high.endswith("→ off")
    # What is served: the head's scores for low users, the base's elsewhere.
    expected = np.where((segments == 0)[:, None], head, base)
    assert served == pytest.approx(
        _rows(users, segments, labels, expected).report(model.cfg.tasks), nan_ok=True
    )

    b = make_batch(model.cfg, 96, seed=7, labels=False)
    out = model(b)
    low = b["segment"] == SEGMENT_INDEX["low"]
    assert low.any() and (~low).any()
    assert torch.all(out["residual"][~low] == 0)  # mid and high: the base ranker's score
    assert torch.all(out["residual"][low] != 0)
    torch.testing.assert_close(out["logits"][~low], out["base_logits"][~low], rtol=0, atol=0)
    del b["segment"]
    with pytest.raises(ValueError, match="batch\\['segment'\\] is needed"):
        model(b)


def test_a_lead_that_a_few_users_carry_does_not_pass_the_test_over_users(make_config, make_batch):
    model = _trained_residual_model(make_config, make_batch)
    users, segments, labels, base = _validation_day(len(model.cfg.tasks), seed=1)
    head = base.copy()
    few = (segments == 0) & (users < 6)  # 6 of the 60 low-active users: ranked perfectly
    head[few] = np.where(labels[few] == 1, 0.99, 0.01)
    rest = (segments == 0) & ~few  # the other 54: a little worse
    head[rest] -= np.where(labels[rest] == 1, 1.0, -1.0) * 0.01
    base_rows, head_rows = (
        _rows(users, segments, labels, base),
        _rows(users, segments, labels, head),
    )
    predict = _predict_for(model, base_rows, head_rows)

    gate, _ = gate_residual_head(model, predict, "auc/click/all", 0.002, 0.05)
    assert gate["residual_gate/low/with_head"] > gate["residual_gate/low/base"] + 0.002
    assert gate["residual_gate/low/p_users"] > 0.05
    assert gate["residual_gate/low/kept"] == 0.0
    model.residual.segment_on.fill_(1.0)
    gate, _ = gate_residual_head(model, predict, "auc/click/all", 0.002, 1.0)  # no test
    assert gate["residual_gate/low/kept"] == 1.0


def test_the_test_over_users_reads_each_users_ranking_and_skips_unlabelled_rows():
    # Users 1-3: two rows each, one of each class; the head ranks each pair right, the
    # base ties them. User 4's positive row has no label: one class left, not tested.
    users = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    labels = np.array([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0], [1.0], [0.0]])
    known = np.array([[True]] * 6 + [[False], [True]])
    segments = np.zeros(8, dtype=int)
    base = ScoredRows(users, segments, labels, np.full((8, 1), 0.5), known)
    better = np.array([[0.6], [0.4], [0.7], [0.2], [0.3], [0.9], [0.9], [0.1]])
    head = ScoredRows(users, segments, labels, better, known)
    every = np.ones(8, dtype=bool)
    p, n_users = user_ranking_gain_p_value(base, head, every, [0])
    assert n_users == 3
    assert p == pytest.approx(0.125)  # 3 users, all better: the smallest one-sided p
    p_worse, _ = user_ranking_gain_p_value(head, base, every, [0])
    assert p_worse == 1.0


def test_the_gate_is_saved_with_the_weights_and_older_weights_serve_every_segment(
    make_config, make_batch
):
    model = _trained_residual_model(make_config, make_batch)
    users, segments, labels, base = _validation_day(len(model.cfg.tasks))
    rows = _rows(users, segments, labels, base)
    gate, _ = gate_residual_head(model, lambda: rows, "auc/click/all")
    assert model.residual.segment_on.sum() == 0  # a tie: off
    assert gate["residual_gate/low/p_users"] == 1.0  # no user's ranking differs
    state = model.state_dict()
    again = build_ranker(model.cfg)
    again.load_weights(state)
    assert again.residual.segment_on.sum() == 0
    older = {k: v for k, v in state.items() if k != "residual.segment_on"}
    again.load_weights(older)
    assert torch.equal(again.residual.segment_on, torch.ones(3))


def test_a_validation_day_without_rows_switches_the_head_off(make_config, make_batch):
    model = _trained_residual_model(make_config, make_batch)
    gate, served = gate_residual_head(model, lambda: None, "auc/click/all")
    assert model.residual.segment_on.sum() == 0 and gate == {} and served == {}


def test_within_base_ranker_only_the_model_serves_its_base_and_the_head_returns_after(
    make_config, make_batch
):
    model = _trained_residual_model(make_config, make_batch)
    b = make_batch(model.cfg, 64, seed=3, labels=False)
    with base_ranker_only(model):
        model.load_state_dict(model.state_dict())  # loading weights does not undo it
        out = model(b)
    torch.testing.assert_close(out["logits"], out["base_logits"], rtol=0, atol=0)
    assert model(b)["residual"].abs().sum() > 0
