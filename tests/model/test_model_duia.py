"""UIE, UPBE, UHSE: what each enhancement does with the memories."""

from __future__ import annotations

import torch

from duia_spark.model.duia import (
    HistorySequenceEnhancement,
    PositiveBehaviourEnhancement,
    UserInterestEnhancement,
)
from duia_spark.model.ghca import ClusterMemory
from duia_spark.model.layers import masked_mean, normalise


def _memory_in_positive_orthant(dim: int = 8) -> ClusterMemory:
    memory = ClusterMemory(6, 3, dim, seed=0)
    with torch.no_grad():
        memory.centres1.copy_(torch.rand(6, dim) + 0.1)
        memory.centres2.copy_(torch.rand(6, 3, dim) + 0.1)
    return memory


def test_query_unlike_every_centre_gets_zero_enhancement_and_mask_zero():
    memory = _memory_in_positive_orthant()
    uie = UserInterestEnhancement(
        memory, item_dim=5, similarity_threshold=0.0, threshold_enabled=True, temperature=0.1
    )
    q = normalise(torch.tensor([[-1.0] * 8, [1.0] * 8]))  # row 0 opposes every centre
    r = memory.retrieve(q, top_k=3)
    assert torch.all(r.top_sim[0] < 0)
    enhancement, personal, mask = uie(r, torch.randn(2, 5))
    assert mask.tolist() == [False, True]
    assert torch.equal(enhancement[0], torch.zeros(8))  # exactly zero: no noise
    assert torch.equal(personal[0], torch.zeros(8))
    assert enhancement[1].norm() > 0.5 and personal[1].norm() > 0.5


def test_threshold_switch_off_keeps_dissimilar_centres():
    memory = _memory_in_positive_orthant()
    uie = UserInterestEnhancement(memory, 5, 0.0, threshold_enabled=False, temperature=0.1)
    q = normalise(-torch.ones(1, 8))
    _, _, mask = uie(memory.retrieve(q, top_k=3), torch.randn(1, 5))
    assert mask.tolist() == [True]


def test_enhancement_is_the_similarity_weighted_mean_of_kept_centres():
    memory = ClusterMemory(3, 2, 2, seed=0)
    with torch.no_grad():
        memory.centres1.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    uie = UserInterestEnhancement(memory, 2, 0.0, True, temperature=1.0)
    q = normalise(torch.tensor([[1.0, 1.0]]))
    enhancement, _, _ = uie(memory.retrieve(q, top_k=3), torch.zeros(1, 2))
    # Centres 0 and 1 have cos 0.707; centre 2 has -0.707 and is dropped.
    torch.testing.assert_close(enhancement, torch.tensor([[0.5, 0.5]]))


def test_upbe_finds_the_user_clusters_that_consumed_an_item_positively():
    memory = ClusterMemory(4, 2, 4, seed=0)
    with torch.no_grad():
        memory.centres1.copy_(torch.eye(4))
    upbe = PositiveBehaviourEnhancement(memory, 3, 1, 0.0, True, temperature=0.1)
    items = normalise(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    slots = torch.tensor([2, 0])  # cluster 2 liked item 0, cluster 0 liked item 1
    positive = torch.tensor([True, True])
    weights = torch.ones(2)

    vec, mask = upbe(items)
    assert mask.tolist() == [False, False]  # nothing written yet: no enhancement
    assert torch.equal(vec, torch.zeros(2, 4))

    opt = torch.optim.SGD([upbe.slots], lr=0.25)
    upbe.observe(slots, positive, weights)
    upbe.write_loss(items, slots, positive, weights).backward()
    opt.step()

    vec, mask = upbe(items)
    assert mask.tolist() == [True, True]
    torch.testing.assert_close(vec, torch.eye(4)[[2, 0]])  # the consuming clusters' centres


def test_upbe_forgets_a_slot_when_its_user_cluster_is_reseeded():
    memory = ClusterMemory(4, 2, 4, seed=0)
    upbe = PositiveBehaviourEnhancement(memory, 3, 2, 0.0, True, 0.1)
    upbe.observe(torch.tensor([1]), torch.tensor([True]), torch.ones(1))
    with torch.no_grad():
        upbe.slots[1] = torch.tensor([1.0, 0.0, 0.0])
    assert upbe.valid_slots().tolist() == [False, True, False, False]
    memory.generation[1] += 1  # what a re-seed of unit 1 does
    assert upbe.valid_slots().tolist() == [False, False, False, False]
    upbe.observe(torch.tensor([3]), torch.tensor([True]), torch.ones(1))
    assert torch.equal(upbe.slots[1].detach(), torch.zeros(3))


def test_uhse_maps_history_to_item_centres_and_fills_short_histories():
    dim = 4
    memory = ClusterMemory(2, 2, dim, seed=0)
    with torch.no_grad():
        memory.centres1.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        memory.centres2.copy_(
            torch.tensor(
                [
                    [[1.0, 0.1, 0, 0], [1.0, 0, 0.1, 0]],
                    [[0, 1.0, 0.1, 0], [0, 1.0, 0, 0.1]],
                ]
            )
        )
    table = torch.nn.Embedding(10, dim)
    with torch.no_grad():
        table.weight.copy_(torch.randn(10, dim))
        table.weight[3] = torch.tensor([2.0, 0.2, 0.0, 0.0])  # item 3 sits by leaf 0
    uhse = HistorySequenceEnhancement(memory, dim, n_items=10)
    with torch.no_grad():
        uhse.key_proj.weight.copy_(torch.eye(dim))
        uhse.key_proj.bias.zero_()
    hist_items = torch.tensor([[3, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    hist_mask = hist_items > 0
    direction = normalise(masked_mean(table(hist_items).detach(), hist_mask))
    key_table, index, mask = uhse(direction, hist_items, hist_mask, table, None, None)
    keys = key_table[index]  # [B, L, d]

    leaves = normalise(memory.leaf_centres().detach())
    torch.testing.assert_close(keys[0, 0], leaves[0])
    assert mask[0].all()  # the one-item history is filled up to the sequence length
    filled = keys[0, 1:]
    assert (filled @ normalise(table.weight[3].detach())).min() > 0.0  # near the user's interest
    assert not mask[1].any()  # no history and no fallback anchor: nothing is invented

    anchor = normalise(torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 2))
    _, _, mask = uhse(direction, hist_items, hist_mask, table, anchor, torch.tensor([True, True]))
    assert mask[1].all()  # UPBE's positive-item direction anchors an empty history


def test_uhse_item_centre_cache_is_cleared_when_the_memory_changes():
    dim = 4
    memory = ClusterMemory(2, 2, dim, seed=0)
    with torch.no_grad():
        memory.centres1.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        memory.centres2.copy_(
            torch.tensor(
                [[[1.0, 0.1, 0, 0], [1.0, 0, 0.1, 0]], [[0, 1.0, 0.1, 0], [0, 1.0, 0, 0.1]]]
            )
        )
    table = torch.nn.Embedding(6, dim)
    with torch.no_grad():
        table.weight[5] = torch.tensor([0.0, 1.0, 0.3, 0.0])  # item 5 is nearest leaf 2
    uhse = HistorySequenceEnhancement(memory, dim, n_items=6)  # training mode: cache on
    hist = torch.tensor([[5]])
    assert uhse.history_leaves(hist, table).item() == 2
    with torch.no_grad():  # the centres swap places, as a re-seed could do
        memory.centres1.copy_(memory.centres1.flip(0))
        memory.centres2.copy_(memory.centres2.flip(0))
    assert uhse.history_leaves(hist, table).item() == 2  # cached within the window
    assert uhse.eval().history_leaves(hist, table).item() == 0  # eval: always fresh
    uhse.train()
    memory.version += 1  # what closing a window (when centres are re-seeded) does
    assert uhse.history_leaves(hist, table).item() == 0  # recomputed after it
