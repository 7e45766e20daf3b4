"""A frozen memory: the ranker trains on, the memories and the query tower stay put."""

import torch

from duia_spark.model.ranker import build_ranker


def _memory_side(model) -> dict[str, torch.Tensor]:
    state = {
        f"{name}.{k}": v for name, m in model.memories().items() for k, v in m.state_dict().items()
    }
    state.update({f"query_tower.{k}": v for k, v in model.query_tower.state_dict().items()})
    return {k: v.detach().clone() for k, v in state.items()}


def _step(model, opt, batch) -> dict:
    loss, parts = model.loss(batch, model(batch))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return parts


def test_after_freezing_training_moves_the_ranker_and_not_the_memories(make_config, make_batch):
    # dead_centre_window 5: the steps below would close windows and re-seed centres.
    model = build_ranker(make_config(variant="ple+duia", seed=3))
    opt = model.build_optimizer(0.01)
    model.train()
    for i in range(4):
        learning = _step(model, opt, make_batch(model.cfg, seed=i))
    assert {"clustering", "aux"} <= learning.keys()
    model.freeze_memories()
    memory = _memory_side(model)
    ranker = model.item_emb.weight.detach().clone()
    for i in range(12):
        frozen = _step(model, opt, make_batch(model.cfg, seed=100 + i))
    assert not {"clustering", "aux"} & frozen.keys()
    after = _memory_side(model)
    changed = [k for k in memory if not torch.equal(memory[k], after[k])]
    assert not changed
    assert not torch.equal(ranker, model.item_emb.weight)


def test_a_frozen_query_tower_queries_as_serving_does(make_config):
    model = build_ranker(make_config(variant="ple+duia", query_behaviour_dropout=0.9))
    tower = model.query_tower
    behaviour, profile = torch.randn(32, 3 * model.cfg.embedding_dim), torch.randn(32, 4)
    tower.eval()
    serving = tower(behaviour, profile)
    tower.train()
    assert not torch.equal(tower(behaviour, profile), serving)  # behaviour dropout
    torch.testing.assert_close(tower(behaviour, profile, learning=False), serving)
