"""One scoring world per test session: a tiny champion trained on the training tests'
samples, and a few days of hand-built events with their silver tables as of D.

Users u1..u20 act on D-5..D-1 (they like the items of their group u % 4 == v % 4);
u21..u24 acted only on D-20, so they are in silver.user_activity but not "active".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from duia_spark.data.activity import segment_users_by_activity
from duia_spark.data.item_stats import compute_item_stats
from duia_spark.data.schema import EVENTS_SCHEMA, SIGNALS
from duia_spark.data.sequences import build_user_sequences

_spec = importlib.util.spec_from_file_location(
    "duia_training_fixtures", Path(__file__).resolve().parent.parent / "training" / "conftest.py"
)
training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(training)

D = dt.date(2026, 1, 8)  # the scoring date
ACTIVE_USERS = [f"u{k}" for k in range(1, 21)]
IDLE_USERS = [f"u{k}" for k in range(21, 25)]  # only on D-20
N_ITEMS = training.N_ITEMS
GROUPS = 4


def _events(seed: int = 3) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []

    def add(user: str, item: int, day: dt.date) -> None:
        u = int(user[1:])
        likes = (u % GROUPS) == (item % GROUPS)
        long_view = int(rng.random() < (0.7 if likes else 0.1))
        signals = {s: 0 for s in SIGNALS}
        signals.update(click=int(long_view or rng.random() < 0.3), long_view=long_view)
        ts = dt.datetime.combine(day, dt.time(int(rng.integers(0, 24)), int(rng.integers(0, 60))))
        row = {
            "user_id": user,
            "item_id": f"v{item}",
            "event_ts": ts,
            **signals,
            "play_time_ms": 8000 if long_view else 1000,
            "duration_ms": 10_000,
            "source": "test",
            "source_file": "test.csv",
            "ingest_ts": dt.datetime(2026, 1, 1),
            "event_date": day,
        }
        rows.append(tuple(row.get(f.name) for f in EVENTS_SCHEMA.fields))

    for offset in range(1, 6):
        day = D - dt.timedelta(days=offset)
        for user in ACTIVE_USERS:
            for item in rng.choice(np.arange(1, N_ITEMS + 1), 3, replace=False):
                add(user, int(item), day)
    for user in IDLE_USERS:
        add(user, 1, D - dt.timedelta(days=20))
    return rows


def write_scoring_inputs(spark, lake, cfg) -> None:
    """bronze.events, bronze.item_features and the silver tables as of D."""
    events = spark.createDataFrame(_events(), EVENTS_SCHEMA)
    days = sorted({r.event_date for r in events.select("event_date").distinct().collect()})
    lake.replace_partitions(events, "events", "event_date", days)
    events = lake.read("events")
    lake.replace_partitions(
        segment_users_by_activity(events, D, cfg.activity), "user_activity", "activity_date", [D]
    )
    lake.replace_partitions(
        build_user_sequences(events, D, cfg.sequences), "user_sequences", "as_of_date", [D]
    )
    lake.replace_partitions(
        compute_item_stats(events, D, cfg.item_stats), "item_stats", "stats_date", [D]
    )
    items = [
        (f"v{i}", f"c{i % GROUPS + 1}", f"a{i % 7 + 1}", 10_000) for i in range(1, N_ITEMS + 1)
    ]
    lake.overwrite(
        spark.createDataFrame(
            items, "item_id string, category string, author_id string, duration_ms long"
        ),
        "item_features",
    )


def score_overrides() -> list[str]:
    return [
        "score.top_k=5",
        "score.popular_items=15",
        "score.popular_window_days=7",
        "score.active_window_days=7",
        "score.max_candidates_per_user=12",
        "score.batch_size=64",
        "train.epochs=1",
        "train.train_days=3",
    ]


def scoring_world_overrides(root: Path) -> list[str]:
    """The overrides of the scoring world kept under `root` (also for `duia --set`)."""
    return [
        f"lakehouse.root={root / 'lakehouse'}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        f"mlflow.artifact_root={root / 'mlartifacts'}",
        f"train.checkpoint_dir={root / 'checkpoints'}",
        f"train.petastorm_cache_dir={root / 'petastorm'}",
        *training.small_model_overrides(),
        *score_overrides(),
    ]


@pytest.fixture(scope="session")
def scoring_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scoring")


@pytest.fixture(scope="session")
def scoring_cfg(base_cfg, scoring_root):
    from duia_spark.config import load_config

    cfg = load_config(overrides=scoring_world_overrides(scoring_root))
    return dataclasses.replace(cfg, spark=base_cfg.spark)


@pytest.fixture(scope="session")
def scoring_world(spark, scoring_cfg):
    """The lakehouse of `scoring_cfg` with a champion (version 1) and D's inputs."""
    from mlflow import MlflowClient

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.stages import train as train_stage

    cfg = scoring_cfg
    lake = Lakehouse(spark, cfg)
    training.write_tiny_lakehouse(spark, lake, cfg)
    val_day = training.FIRST_DAY + dt.timedelta(days=training.N_DAYS - 1)
    args = argparse.Namespace(
        date=val_day, resume=False, cold_start=True, full=False, variant=None, no_register=False
    )
    assert train_stage.run(cfg, args) == 0
    MlflowClient().set_registered_model_alias(cfg.mlflow.registered_model, "champion", "1")
    write_scoring_inputs(spark, lake, cfg)
    return lake


def run_score(cfg, day: dt.date = D, **kw) -> int:
    from duia_spark.stages import score as score_stage

    args = argparse.Namespace(date=day, generator=None, candidate_table=None, **kw)
    return score_stage.run(cfg, args)


def with_score(cfg, table: str | None = None, **kw):
    """`cfg` with score settings changed and (optionally) gold.scores at another path."""
    out = dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, **kw))
    if table:
        tables = dataclasses.replace(cfg.lakehouse.tables, scores=table)
        out = dataclasses.replace(out, lakehouse=dataclasses.replace(cfg.lakehouse, tables=tables))
    return out


@pytest.fixture(scope="session")
def popular_scores(scoring_world, scoring_cfg):
    """gold.scores of D from the popular generator (pandas), scored once per session."""
    assert run_score(scoring_cfg) == 0
    return scoring_world.read("scores").where(f"score_date = '{D}'").toPandas()
