"""The residual gate: the head serves only the segments where it beat the base on D."""

from __future__ import annotations

import pytest
import torch
from conftest import train_ranker

from duia_spark.data.schema import SEGMENT_INDEX
from duia_spark.model.ranker import build_ranker
from duia_spark.training.residual_gate import (
    base_ranker_only,
    gate_residual_head,
    metric_for_segment,
)


def _trained_residual_model(make_config, make_batch):
    model = build_ranker(make_config(variant="ple+duia", enhancement_fusion="residual"))
    train_ranker(model, make_batch)
    return model.eval()


def test_a_per_segment_metric_is_read_from_the_selection_metric():
    assert metric_for_segment("auc/click/all+gauc/long_view/all", "low") == (
        "auc/click/low+gauc/long_view/low"
    )


def test_the_head_is_switched_off_where_the_base_alone_validates_better(make_config, make_batch):
    model = _trained_residual_model(make_config, make_batch)

    def evaluate():  # with the head, low improves, mid gets worse, high is unchanged
        on = model.residual_served
        return {
            "auc/click/low": 0.70 if on else 0.68,
            "auc/click/mid": 0.66 if on else 0.67,
            "auc/click/high": 0.71,
        }

    gate = gate_residual_head(model, evaluate, "auc/click/all")
    assert [gate[f"residual_gate/{s}/kept"] for s in ("low", "mid", "high")] == [1.0, 0.0, 0.0]
    assert gate["residual_gate/low/with_head"] == 0.70 and gate["residual_gate/low/base"] == 0.68
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


def test_the_gate_is_saved_with_the_weights_and_older_weights_serve_every_segment(
    make_config, make_batch
):
    model = _trained_residual_model(make_config, make_batch)
    report = {"auc/click/low": 0.5, "auc/click/mid": 0.5, "auc/click/high": float("nan")}
    gate_residual_head(model, lambda: report, "auc/click/all")
    assert model.residual.segment_on.sum() == 0  # a tie, or no rows of a segment on D: off
    state = model.state_dict()
    again = build_ranker(model.cfg)
    again.load_weights(state)
    assert again.residual.segment_on.sum() == 0
    older = {k: v for k, v in state.items() if k != "residual.segment_on"}
    again.load_weights(older)
    assert torch.equal(again.residual.segment_on, torch.ones(3))


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
