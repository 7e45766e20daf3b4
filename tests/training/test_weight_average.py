"""The mean of the weights over epochs: network weights averaged, cluster memories kept."""

import pytest
import torch
from tiny_model import single_thread_torch  # noqa: F401  (autouse: tiny tensors, one thread)

from duia_spark.model.ranker import build_ranker
from duia_spark.training.weight_average import WeightAverage, averaged_keys


def _train_steps(model, make_batch, steps: int, seed: int) -> None:
    opt = model.build_optimizer(0.01)
    model.train()
    for i in range(steps):
        batch = make_batch(model.cfg, seed=seed + i)
        loss, _ = model.loss(batch, model(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_the_average_is_the_mean_of_the_snapshots_and_memories_come_from_the_last(
    make_config, make_batch
):
    model = build_ranker(make_config(variant="ple+duia"))
    average = WeightAverage(model)
    snapshots = []
    for epoch in range(3):
        _train_steps(model, make_batch, 3, seed=10 * epoch)
        average.update(model)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    state = average.state_dict(model)
    keys = set(averaged_keys(model))
    assert "input_norm.running_mean" in keys and "item_emb.weight" in keys
    centres = {
        n for n, p in model.named_parameters() if any(p is c for c in model.centre_parameters())
    }
    assert centres and not centres & keys  # k-means centres and slots are not averaged
    for k, v in state.items():
        if k in keys:
            mean = torch.stack([s[k].float() for s in snapshots]).mean(0)
            torch.testing.assert_close(v, mean.to(v.dtype), msg=k)
        else:  # memories and bookkeeping: the last epoch's
            assert torch.equal(v, snapshots[-1][k]), k
    # The weights moved between epochs, so the mean is not any one snapshot.
    assert not torch.equal(state["item_emb.weight"], snapshots[-1]["item_emb.weight"])
    # The model itself keeps its own weights.
    assert torch.equal(model.state_dict()["item_emb.weight"], snapshots[-1]["item_emb.weight"])


def test_a_restored_average_goes_on_as_the_uninterrupted_one(make_config, make_batch):
    model = build_ranker(make_config(variant="ple"))
    straight, restored = WeightAverage(model), WeightAverage(model)
    _train_steps(model, make_batch, 2, seed=0)
    straight.update(model)
    restored.update(model)
    saved = restored.checkpoint()
    restored = WeightAverage(model)
    restored.restore(saved, "cpu")
    _train_steps(model, make_batch, 2, seed=5)
    straight.update(model)
    restored.update(model)
    a, b = straight.state_dict(model), restored.state_dict(model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_average_before_the_first_epoch(make_config):
    with pytest.raises(ValueError, match="before any update"):
        WeightAverage(build_ranker(make_config())).state_dict(build_ranker(make_config()))
