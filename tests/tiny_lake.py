"""A tiny gold.samples + vocabulary with a planted signal, written straight to Delta,
so training, evaluation and scoring tests need no upstream Spark jobs.

Fixtures `train_cfg` and `tiny_lake` are re-exported by the conftest.py of the test
folders that use them."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from duia_spark.data.samples import (
    item_dense_features,
    samples_schema,
    side_categorical_features,
    user_dense_features,
)
from duia_spark.data.schema import SEGMENTS, SIGNALS

FIRST_DAY = dt.date(2026, 1, 1)
N_DAYS = 4  # three training days, the fourth validates
N_USERS, N_ITEMS, N_GROUPS = 60, 40, 4


def make_samples(cfg, rows_per_day: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seq = cfg.sequences
    n_item_dense = len(item_dense_features(cfg.item_stats, cfg.features))
    side = side_categorical_features(cfg.features)
    frames = []
    for d in range(N_DAYS):
        u = rng.integers(1, N_USERS + 1, rows_per_day)
        i = rng.integers(1, N_ITEMS + 1, rows_per_day)
        likes = (u % N_GROUPS) == (i % N_GROUPS)  # users like their group's topic
        p = np.where(likes, 0.7, 0.15)
        click = (rng.random(rows_per_day) < p).astype(np.int32)
        seg = (u % 3).astype(np.int32)
        hist = [
            np.pad(
                rng.integers(1, N_ITEMS + 1, min(seq.exposures_len, int(s) * 5)),
                (0, seq.exposures_len),
            )[: seq.exposures_len].astype(np.int32)
            for s in seg
        ]
        row = {
            "user_id": [f"u{x}" for x in u],
            "item_id": [f"v{x}" for x in i],
            "event_ts": pd.Timestamp(FIRST_DAY + dt.timedelta(days=d))
            + pd.to_timedelta(rng.integers(0, 86_400, rows_per_day), "s"),
            "user_idx": u.astype(np.int32),
            "item_idx": i.astype(np.int32),
            "category_idx": (i % N_GROUPS + 1).astype(np.int32),
            "author_idx": (i % 7 + 1).astype(np.int32),
            "user_dense": [
                rng.random(len(user_dense_features(cfg.features))).astype(np.float32) for _ in u
            ],
            "item_dense": [rng.random(n_item_dense).astype(np.float32) for _ in u],
            # side features: a user column that follows the interest group (a profile
            # that carries signal), then any other declared column at random
            "side_cat": [
                np.array(
                    [
                        (x % N_GROUPS) % (n - 1) + 1 if k == 0 else rng.integers(0, n)
                        for k, (_, _, n) in enumerate(side)
                    ],
                    np.int32,
                )
                for x in u
            ],
            "segment": [SEGMENTS[s] for s in seg],
            "segment_idx": seg,
            "hist_items": hist,
            "pos_items": [np.zeros(seq.positives_len, np.int32) for _ in u],
            "neg_items": [np.zeros(seq.negatives_len, np.int32) for _ in u],
            "hist_len": np.array([int((h > 0).sum()) for h in hist], np.int32),
            "pos_len": np.zeros(rows_per_day, np.int32),
            "neg_len": np.zeros(rows_per_day, np.int32),
            "play_time_ms": (click * 5000).astype(np.int64),
            "play_time_known": np.ones(rows_per_day, np.int32),
            "duration_ms": np.full(rows_per_day, 10_000, np.int64),
            "sample_date": FIRST_DAY + dt.timedelta(days=d),
        }
        for s in SIGNALS:
            row[s] = (
                (click & (rng.random(rows_per_day) < 0.8)).astype(np.int32)
                if s != "click"
                else click
            )
            row[f"{s}_known"] = np.ones(rows_per_day, np.int32)
        frames.append(pd.DataFrame(row))
    return pd.concat(frames, ignore_index=True)


def write_tiny_lakehouse(spark, lake, cfg) -> None:
    pdf = make_samples(cfg)
    schema = samples_schema()
    df = spark.createDataFrame(pdf[schema.names], schema)
    days = [FIRST_DAY + dt.timedelta(days=d) for d in range(N_DAYS)]
    lake.replace_partitions(df, "samples", "sample_date", days)
    vocab = [("user", f"u{k}", k) for k in range(1, N_USERS + 1)]
    vocab += [("item", f"v{k}", k) for k in range(1, N_ITEMS + 1)]
    vocab += [("category", f"c{k}", k) for k in range(1, N_GROUPS + 1)]
    vocab += [("author", f"a{k}", k) for k in range(1, 8)]
    lake.overwrite(
        spark.createDataFrame(
            [(k, i, x, FIRST_DAY) for k, i, x in vocab],
            "kind string, id string, idx int, first_seen_date date",
        ),
        "vocabulary",
    )


def small_model_overrides() -> list[str]:
    return [
        "model.embedding_dim=8",
        "model.k1=8",
        "model.k2=3",
        "model.memory_dim=8",
        "model.item_k1=6",
        "model.item_k2=2",
        "model.expert_hidden=16",
        "model.tower_hidden=8",
        "model.query_tower_hidden=16",
        "model.recent_queries=256",
        "model.dead_centre_window=20",
        "model.tasks=[click, long_view, like]",
        "train.batch_size=128",
        "train.epochs=3",
        "train.early_stopping_patience=5",
        "train.use_gpu=false",
    ]


@pytest.fixture
def train_cfg(base_cfg, tmp_path):
    from duia_spark.config import load_config

    cfg = load_config(
        overrides=[
            f"lakehouse.root={tmp_path / 'lakehouse'}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
            f"train.checkpoint_dir={tmp_path / 'checkpoints'}",
            f"train.petastorm_cache_dir={tmp_path / 'petastorm'}",
            *small_model_overrides(),
        ]
    )
    return dataclasses.replace(cfg, spark=base_cfg.spark)


@pytest.fixture
def tiny_lake(spark, train_cfg):
    from duia_spark.lakehouse import Lakehouse

    lake = Lakehouse(spark, train_cfg)
    write_tiny_lakehouse(spark, lake, train_cfg)
    return lake
