"""The ranker's parts: the base ranker, the DUIA enhancement, the losses, composed."""

from __future__ import annotations

import math

import pytest
import torch

from duia_spark.model.enhancement import DuiaEnhancement
from duia_spark.model.losses import task_loss, to_label_units, track_targets_
from duia_spark.model.ranker import DuiaRanker

# Module names at the top of the state dict, in order: saved weights (champions, the
# warm start) are loaded by these keys, and the optimizer's state follows this order.
TOP_LEVEL = {
    ("ple", "input"): ["user_emb", "item_emb", "category_emb", "author_emb"]
    + ["hist_attention", "pos_attention", "input_norm", "ple"],
    ("ple+duia", "residual"): ["user_emb", "item_emb", "category_emb", "author_emb"]
    + ["hist_attention", "pos_attention", "input_norm", "ple", "user_memory", "query_tower"]
    + ["uie", "upbe", "item_memory", "uhse", "duia_proj", "uhse_attention", "residual"],
    ("ple+duia", "input"): ["user_emb", "item_emb", "category_emb", "author_emb"]
    + ["hist_attention", "pos_attention", "user_memory", "query_tower", "uie", "upbe"]
    + ["item_memory", "uhse", "duia_proj", "input_norm", "ple"],
}


@pytest.mark.parametrize(("variant", "fusion"), list(TOP_LEVEL))
def test_the_state_dict_keeps_the_names_saved_models_have(variant, fusion, make_config):
    model = DuiaRanker(make_config(variant=variant, enhancement_fusion=fusion))
    own = ["target_mean", "target_std", "target_tracked"]
    tops = list(dict.fromkeys(k.split(".")[0] for k in model.state_dict() if k not in own))
    assert list(model.state_dict())[:3] == own
    assert tops == TOP_LEVEL[(variant, fusion)]


def test_the_enhancement_runs_on_the_rankers_own_modules_and_follows_its_mode(make_config):
    model = DuiaRanker(make_config(variant="ple+duia"))
    for name in DuiaEnhancement.PARTS:
        assert getattr(model.duia, name) is getattr(model, name)
    assert DuiaRanker(make_config(variant="ple")).duia is None
    assert not model.eval().duia.training and model.train().duia.training


@pytest.mark.parametrize("fusion", ["input", "residual"])
@pytest.mark.parametrize("variant", ["ple+uie", "ple+uie+upbe", "ple+duia"])
def test_the_enhancement_returns_one_vector_of_its_width(variant, fusion, make_config, make_batch):
    cfg = make_config(variant=variant, enhancement_fusion=fusion)
    model = DuiaRanker(cfg).eval()
    b = make_batch(cfg, 8, seed=5, labels=False)
    out = model.duia(model.embed(b), b["segment"], model.item_emb)
    assert out.vector.shape == (8, model.duia.width)
    # The enhanced sequence joins the base's history attention only with input fusion.
    assert (out.shared is not None) == (variant == "ple+duia" and fusion == "input")


def test_a_task_loss_reads_only_the_rows_whose_label_is_known():
    out = torch.tensor([2.0, -1.0, 0.5])
    y = torch.tensor([1.0, float("nan"), 0.0])
    expected = task_loss(out[[0, 2]], y[[0, 2]])
    torch.testing.assert_close(task_loss(out, y), expected)
    assert float(task_loss(out, torch.full((3,), float("nan")))) == 0.0


def test_play_time_is_tracked_standardised_and_served_back_in_milliseconds():
    mean, std, tracked = torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.bool)
    ms = torch.tensor([[1.0, 1_000.0], [0.0, 10_000.0], [1.0, float("nan")]])
    track_targets_(ms, [False, True], mean, std, tracked)
    log_ms = torch.log1p(torch.tensor([1_000.0, 10_000.0]))
    assert tracked.tolist() == [False, True] and float(mean[0]) == 0.0
    torch.testing.assert_close(mean[1], log_ms.mean())
    # A logit of 0 is the mean target: exp(mean of log1p) - 1 ms.
    served = to_label_units(torch.zeros(1, 2), [None, (mean[1], std[1])])
    assert float(served[0, 0]) == 0.5
    assert math.isclose(float(served[0, 1]), math.expm1(float(log_ms.mean())), rel_tol=1e-5)
    track_targets_(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), [False, True], mean, std, tracked)
    torch.testing.assert_close(mean[1], 0.99 * log_ms.mean())  # later batches: momentum 0.01
