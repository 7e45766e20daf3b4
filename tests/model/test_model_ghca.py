"""GHCA ClusterMemory: clustering quality, hierarchical search, collapse guards, files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from duia_spark.model.ghca import ClusterMemory, load_memories, save_memories
from duia_spark.model.layers import normalise


def planted_clusters(n_clusters: int, per_cluster: int, dim: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = normalise(torch.randn(n_clusters, dim, generator=g))
    labels = torch.arange(n_clusters).repeat_interleave(per_cluster)
    points = normalise(centres[labels] + spread * torch.randn(len(labels), dim, generator=g))
    return points, labels


def train_memory(memory: ClusterMemory, data, segments=None, steps=150, batch=256, rho=0.25):
    """The ranker's training loop reduced to the memory: prepare, retrieve, loss, SGD."""
    opt = torch.optim.SGD(memory.centre_parameters(), lr=rho)
    g = torch.Generator().manual_seed(123)
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=g)
        q = data[idx]
        seg = None if segments is None else segments[idx]
        memory.prepare(q, seg)
        r = memory.retrieve(q)
        w = memory.segment_weights(seg, batch)
        loss = memory.clustering_loss(q, r, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        memory.observe(q, r, seg, w)
    return memory


@pytest.mark.parametrize(("k1", "k2", "hierarchical"), [(8, 1, False), (8, 3, True)])
def test_ghca_recovers_planted_clusters_as_well_as_kmeans(k1, k2, hierarchical):
    points, labels = planted_clusters(8, 400, 16, spread=0.2, seed=0)
    memory = ClusterMemory(k1, k2, 16, hierarchical=hierarchical, dead_centre_window=25, seed=0)
    train_memory(memory, points)
    assigned = memory.retrieve(points).parent  # level-1 cluster (flat with K2=1: the centre)
    ari_ghca = adjusted_rand_score(labels.numpy(), assigned.numpy())
    kmeans = KMeans(8, n_init=10, random_state=0).fit(points.numpy())
    ari_kmeans = adjusted_rand_score(labels.numpy(), kmeans.labels_)
    assert ari_kmeans > 0.8  # the data really is clustered
    assert ari_ghca >= ari_kmeans - 0.05, (ari_ghca, ari_kmeans)


def test_hierarchical_search_matches_exhaustive_search_with_k1_plus_k2_comparisons():
    g = torch.Generator().manual_seed(1)
    k1, k2, dim = 16, 4, 16
    supers = normalise(torch.randn(k1, dim, generator=g))
    subs = normalise(supers.repeat_interleave(k2, 0) + 0.3 * torch.randn(k1 * k2, dim, generator=g))
    points = normalise(
        subs.repeat_interleave(100, 0) + 0.05 * torch.randn(k1 * k2 * 100, dim, generator=g)
    )
    memory = train_memory(
        ClusterMemory(k1, k2, dim, dead_centre_window=25, seed=1), points, steps=200
    )

    r = memory.retrieve(points)
    exhaustive = (points @ normalise(memory.leaf_centres().detach()).T).argmax(dim=1)
    agreement = (r.leaf == exhaustive).float().mean().item()
    assert agreement >= 0.9, agreement
    assert r.comparisons == k1 + k2

    flat = ClusterMemory(k1, k2, dim, hierarchical=False)
    assert flat.retrieve(points[:10]).comparisons == k1 * k2


def test_dead_centres_are_reseeded_from_recent_queries():
    g = torch.Generator().manual_seed(2)
    planted = normalise(torch.randn(4, 8, generator=g))
    points = normalise(planted.repeat_interleave(200, 0) + 0.1 * torch.randn(800, 8, generator=g))
    memory = ClusterMemory(6, 1, 8, hierarchical=False, dead_centre_window=10, seed=2)
    away = -normalise(planted.mean(0))
    with torch.no_grad():
        memory.centres2[2:, 0] = planted  # four live centres, one per cluster
        memory.centres2[0, 0] = away  # two centres no query will ever pick
        memory.centres2[1, 0] = normalise(away + 0.3 * torch.randn(8, generator=g))
        memory.initialised.fill_(True)
    assert (points @ normalise(memory.leaf_centres()[:2].detach()).T).max() < 0.3
    train_memory(memory, points, steps=25)

    leaves = normalise(memory.leaf_centres().detach())
    assert (points @ leaves[:2].T).amax(dim=0).min() > 0.8  # they now sit on real queries
    assert memory.metrics("m")["m_reseeded_total"] >= 2
    assert torch.all(memory.usage2[:2] + memory.prev_usage2[:2] > 0)  # and win some


def _low_segment_share(balanced: bool) -> float:
    """Centres owned (majority of their queries) by low-active users, on data with 90 %
    of rows from high-active users; low and high users' interests differ."""
    g = torch.Generator().manual_seed(3)
    dim, n_low, n_high = 4, 600, 5400
    a = normalise(torch.randn(dim, generator=g))
    low = normalise(a + 0.45 * torch.randn(n_low, dim, generator=g))
    high = normalise(-a + 0.45 * torch.randn(n_high, dim, generator=g))
    points = torch.cat([low, high])
    segments = torch.cat([torch.zeros(n_low, dtype=torch.long), torch.full((n_high,), 2)])
    memory = ClusterMemory(
        16, 1, dim, hierarchical=False, balanced_sampling=balanced, dead_centre_window=20, seed=3
    )
    train_memory(memory, points, segments, steps=120)
    probe = torch.cat([low[:500], high[:500]])
    won = memory.retrieve(probe).leaf
    owners_low = torch.bincount(won[:500], minlength=16)
    owners_high = torch.bincount(won[500:], minlength=16)
    return float((owners_low > owners_high).sum()) / 16


def test_balanced_sampling_gives_low_active_users_a_fair_share_of_centres():
    balanced = _low_segment_share(True)
    unbalanced = _low_segment_share(False)
    # Two segments are present, so a fair share is half of the centres.
    assert balanced >= 0.35, balanced
    assert unbalanced <= balanced - 0.15, (balanced, unbalanced)


def test_clustering_loss_moves_centres_towards_their_queries_only():
    memory = ClusterMemory(4, 2, 8, seed=4)
    q = normalise(torch.randn(32, 8))
    q.requires_grad_(True)
    r = memory.retrieve(q.detach())
    loss = memory.clustering_loss(q, r, torch.ones(32))
    loss.backward()
    assert q.grad is None  # stop-gradient on the query
    assert memory.centres1.grad is not None and memory.centres2.grad is not None
    unused = torch.ones(4, dtype=torch.bool)
    unused[r.parent] = False
    assert torch.all(memory.centres1.grad[unused] == 0)


def test_memories_round_trip_through_safetensors_with_their_config(tmp_path):
    points, _ = planted_clusters(4, 100, 8, spread=0.1, seed=5)
    memory = train_memory(ClusterMemory(4, 2, 8, seed=5), points, steps=12)
    path = tmp_path / "memory.safetensors"
    save_memories(path, {"user": memory}, {"k1": 4, "k2": 2, "note": "test"})

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["config"])["k1"] == 4
    states, config = load_memories(path)
    assert config["note"] == "test"
    fresh = ClusterMemory(4, 2, 8, seed=99)
    fresh.load_state_dict(states["user"])
    assert bool(fresh.initialised)
    torch.testing.assert_close(fresh.centres2, memory.centres2, rtol=0, atol=0)
    assert torch.equal(fresh.retrieve(points).leaf, memory.retrieve(points).leaf)


def test_nearest_leaves_walk_the_nearest_parents_children_most_central_first():
    torch.manual_seed(0)
    memory = ClusterMemory(64, 8, 16, hierarchical=True, seed=0)
    q = torch.nn.functional.normalize(torch.randn(256, 16), dim=1)
    leaves = memory.nearest_leaves(q, 50)
    assert leaves.shape == (256, 50)
    assert all(len(set(row.tolist())) == 50 for row in leaves)  # no centre twice
    # The first K2 are the children of the parent a retrieval picks, in the order of
    # their similarity to that parent's centre; then the next parent's children.
    parent = memory.retrieve(q).parent
    assert torch.equal(leaves[:, :8] // 8, parent.unsqueeze(1).expand(-1, 8))
    c1 = torch.nn.functional.normalize(memory.centres1.detach(), dim=1)
    c2 = torch.nn.functional.normalize(memory.leaf_centres().detach(), dim=1)
    to_parent = (c2[leaves[:, :8]] * c1[parent].unsqueeze(1)).sum(-1)  # [B, 8]
    assert (to_parent[:, :-1] >= to_parent[:, 1:]).all()
    second = (q @ c1.T).topk(2, dim=1).indices[:, 1]
    assert torch.equal(leaves[:, 8:16] // 8, second.unsqueeze(1).expand(-1, 8))
    # Asking for more than the memory holds gives every centre once.
    small = ClusterMemory(3, 2, 16, seed=1)
    assert sorted(small.nearest_leaves(q[:1], 50)[0].tolist()) == list(range(6))
