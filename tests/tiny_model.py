"""A tiny ModelConfig and random batches that follow the data loader's batch contract,
for the model and training tests (their conftest.py re-export the fixtures)."""

from __future__ import annotations

import pytest
import torch

from duia_spark.model.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    values = dict(
        n_users=300,
        n_items=400,
        n_categories=20,
        n_authors=50,
        n_user_dense=4,
        n_item_dense=3,
        embedding_dim=16,
        seq_len=12,
        pos_seq_len=6,
        expert_hidden=32,
        tower_hidden=16,
        k1=8,
        k2=3,
        memory_dim=16,
        item_k1=8,
        item_k2=3,
        query_tower_hidden=32,
        dead_centre_window=5,
        recent_queries=256,
    )
    values.update(overrides)
    return ModelConfig(**values)


def train_ranker(model, make_batch, steps: int = 4, batch: int = 48) -> None:
    """A few Adam steps on random batches (`make_batch(cfg, batch, seed=step)`)."""
    opt = model.build_optimizer(1e-2)
    model.train()
    for step in range(steps):
        b = make_batch(model.cfg, batch, seed=step)
        total, _ = model.loss(b, model(b))
        opt.zero_grad()
        total.backward()
        opt.step()


def random_batch(cfg: ModelConfig, batch: int = 64, seed: int = 0, labels: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    seq, pos = cfg.seq_len, cfg.pos_seq_len
    hist_len = torch.randint(0, seq + 1, (batch,), generator=g)
    hist_mask = torch.arange(seq).unsqueeze(0) < hist_len.unsqueeze(1)
    pos_len = torch.randint(0, pos + 1, (batch,), generator=g)
    pos_mask = torch.arange(pos).unsqueeze(0) < pos_len.unsqueeze(1)
    out = {
        "user_idx": torch.randint(1, cfg.n_users, (batch,), generator=g),
        "item_idx": torch.randint(1, cfg.n_items, (batch,), generator=g),
        "category_idx": torch.randint(1, cfg.n_categories, (batch,), generator=g),
        "author_idx": torch.randint(1, cfg.n_authors, (batch,), generator=g),
        "user_dense": torch.randn(batch, cfg.n_user_dense, generator=g),
        "item_dense": torch.randn(batch, cfg.n_item_dense, generator=g),
        "segment": torch.randint(0, 3, (batch,), generator=g),
        "hist_items": torch.randint(1, cfg.n_items, (batch, seq), generator=g) * hist_mask,
        "hist_mask": hist_mask,
        "pos_items": torch.randint(1, cfg.n_items, (batch, pos), generator=g) * pos_mask,
        "pos_mask": pos_mask,
    }
    if labels:
        out["labels"] = (torch.rand(batch, len(cfg.tasks), generator=g) < 0.4).float()
    return out


@pytest.fixture(autouse=True)
def single_thread_torch():
    """The model tests use tiny tensors: intra-op threads cost more than they save, and
    on a 2-core machine shared with Spark tests OpenMP spin-waiting made them 40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def make_batch():
    return random_batch
