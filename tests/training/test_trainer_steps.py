"""The trainer's steps on in-memory rows: selection, the time box, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np
import pytest
import torch

from duia_spark.config import TrainConfig
from duia_spark.model.config import ModelConfig
from duia_spark.training.loop import TrainJob, train_rank
from duia_spark.training.trainer import Trainer

MODEL = ModelConfig(
    variant="ple+duia",
    n_users=60,
    n_items=80,
    n_categories=10,
    n_authors=20,
    n_user_dense=2,
    n_item_dense=2,
    embedding_dim=8,
    seq_len=5,
    pos_seq_len=3,
    expert_hidden=16,
    tower_hidden=8,
    k1=4,
    k2=2,
    memory_dim=8,
    item_k1=4,
    item_k2=2,
    query_tower_hidden=16,
    dead_centre_window=4,
    recent_queries=64,
)


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """Training columns as select_training_columns makes them."""
    g = np.random.default_rng(seed)
    users = g.integers(1, MODEL.n_users, n)
    items = g.integers(1, MODEL.n_items, n)
    liked = ((users + items) % 3 == 0) | (g.random(n) < 0.2)
    return {
        "user_idx": users,
        "item_idx": items,
        "category_idx": items % 9 + 1,
        "author_idx": items % 19 + 1,
        "segment_idx": users % 3,
        "user_dense": g.normal(size=(n, 2)).astype(np.float32),
        "item_dense": g.normal(size=(n, 2)).astype(np.float32),
        "hist_items": g.integers(0, MODEL.n_items, (n, MODEL.seq_len)),
        "pos_items": g.integers(0, MODEL.n_items, (n, MODEL.pos_seq_len)),
        "labels": np.repeat(liked[:, None], len(MODEL.tasks), 1).astype(np.float32),
        "labels_known": np.ones((n, len(MODEL.tasks)), dtype=np.float32),
    }


class InMemoryRows:
    """What the trainer reads from a Petastorm converter: `make_torch_dataloader` over
    row groups of 40 rows, in an order drawn from `seed`."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns

    def make_torch_dataloader(self, batch_size, num_epochs, cur_shard, shard_count, seed, **_):
        n = len(self.columns["user_idx"])
        groups = [np.arange(i, min(i + 40, n)) for i in range(0, n, 40)][cur_shard::shard_count]

        def batches():
            epoch = 0
            while num_epochs is None or epoch < num_epochs:
                order = np.random.default_rng(seed + epoch).permutation(len(groups))
                index = np.concatenate([groups[i] for i in order])
                for i in range(0, len(index), batch_size):
                    yield {
                        k: torch.as_tensor(v[index[i : i + batch_size]])
                        for k, v in self.columns.items()
                    }
                epoch += 1

        return contextlib.nullcontext(batches())


@pytest.fixture(autouse=True)
def single_thread_torch():
    """Tiny tensors: intra-op threads cost more than they save on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def job(tmp_path, name: str, checkpoints: str = "ck", resume: bool = False, **train) -> TrainJob:
    train = {"epochs": 3, **train}
    tc = dataclasses.replace(TrainConfig(), batch_size=32, use_gpu=False, **train)
    return TrainJob(
        MODEL,
        tc,
        InMemoryRows(rows(192, 1)),
        InMemoryRows(rows(120, 2)),
        192,
        120,
        str(tmp_path / name),
        str(tmp_path / checkpoints),
        resume=resume,
    )


def test_selection_keeps_the_first_epoch_then_only_a_gain(tmp_path):
    trainer = Trainer(job(tmp_path, "out"), rank=0, world=1, device=torch.device("cpu"))
    trainer.keep_if_better(float("nan"), None)  # nothing validated: kept, being the first
    assert trainer.selection.best_state is not None and trainer.selection.best == -np.inf
    trainer.keep_if_better(0.6, None)
    trainer.keep_if_better(0.55, None)
    trainer.keep_if_better(float("nan"), None)
    assert trainer.selection.best == 0.6 and trainer.selection.bad_epochs == 2


def test_a_time_box_stops_only_while_epochs_remain(tmp_path):
    trainer = Trainer(job(tmp_path, "out", stop_after_epochs=1), 0, 1, torch.device("cpu"))
    assert trainer.time_boxed(0) and not trainer.time_boxed(2)  # epoch 3 of 3: done anyway


def test_a_time_boxed_run_resumes_to_the_straight_runs_result(tmp_path):
    # Weight averaging on: its running mean is part of what a resume restores.
    train_rank(job(tmp_path, "straight", "a", epochs=2, average_weights=True))
    train_rank(job(tmp_path, "resumed", "b", epochs=2, average_weights=True, stop_after_epochs=1))
    assert not (tmp_path / "resumed" / "_SUCCESS").exists()  # time-boxed: no result yet
    train_rank(job(tmp_path, "resumed", "b", epochs=2, average_weights=True, resume=True))

    def history(name):
        out = json.loads((tmp_path / name / "history.json").read_text())["history"]
        return [{k: v for k, v in h.items() if k != "samples_per_s"} for h in out]

    assert history("resumed") == history("straight")
    a = torch.load(tmp_path / "straight" / "weights.pt")
    b = torch.load(tmp_path / "resumed" / "weights.pt")
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def is_cache(key: str) -> bool:
    """The item-leaf lookup cache: loading memories resets it (model/duia.py)."""
    return key.endswith(("leaf_cache", "cache_version"))


def test_a_warm_started_trainer_begins_from_the_earlier_models_weights_and_memories(tmp_path):
    train_rank(job(tmp_path, "earlier", "a", epochs=1))
    earlier = tmp_path / "earlier"
    warm = dataclasses.replace(
        job(tmp_path, "next", "b"),
        warm_weights=str(earlier / "weights.pt"),
        warm_memory=str(earlier / "cluster_memory.safetensors"),
        warm_optimizer=str(earlier / "optimizer.pt"),
    )
    trainer = Trainer(warm, 0, 1, torch.device("cpu"))
    start = trainer.model.state_dict()
    saved = torch.load(earlier / "weights.pt")
    assert set(saved) == set(start)
    assert all(torch.equal(start[k], saved[k]) for k in saved if not is_cache(k))
    # ... and continues its optimizer: Adam's moments and step counts as they were kept
    moments = torch.load(earlier / "optimizer.pt")["state"]
    own = trainer.optimizer.state_dict()["state"]
    assert moments and set(own) == set(moments)
    for i, entry in moments.items():
        assert own[i]["step"] == entry["step"] > 0
        assert torch.equal(own[i]["exp_avg_sq"], entry["exp_avg_sq"])
    fresh = Trainer(job(tmp_path, "fresh", "c"), 0, 1, torch.device("cpu")).model.state_dict()
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved)  # a real difference


def test_an_incremental_night_keeps_the_model_it_started_from_unless_an_epoch_beats_it(tmp_path):
    train_rank(job(tmp_path, "earlier", "a", epochs=1))
    earlier = tmp_path / "earlier"
    warm = dataclasses.replace(
        job(tmp_path, "next", "b", epochs=1),
        warm_weights=str(earlier / "weights.pt"),
        warm_memory=str(earlier / "cluster_memory.safetensors"),
        validate_start=True,
    )
    trainer = Trainer(warm, 0, 1, torch.device("cpu"))
    trainer.validate_start()  # epoch 0: the model it starts from
    first = trainer.selection.history[0]
    assert first["epoch"] == 0 and np.isnan(first["loss"]) and "auc/click/all" in first
    start_value = trainer.selection.best
    assert np.isfinite(start_value)
    trainer.train_one_epoch(0)
    trainer.keep_if_better(start_value - 0.01, None)  # an epoch that validates worse
    trainer.finish()
    kept = torch.load(tmp_path / "next" / "weights.pt")
    saved = torch.load(earlier / "weights.pt")
    assert all(torch.equal(kept[k], saved[k]) for k in saved if not is_cache(k))
    trainer.train_one_epoch(1)
    trainer.keep_if_better(start_value + 0.01, None)  # one that validates better is kept
    trainer.finish()
    kept = torch.load(tmp_path / "next" / "weights.pt")
    assert not all(torch.equal(kept[k], saved[k]) for k in saved if not is_cache(k))
