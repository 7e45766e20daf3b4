"""The cluster and table generators, scoring every user of the day, and the clear errors."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import torch
from pyspark.sql import functions as F

from duia_spark import tracking
from duia_spark.config import ConfigError, ScoreConfig
from duia_spark.contract import ARRAY_COLUMNS, ID_COLUMNS, pandas_to_columns, to_batch
from duia_spark.data.vocabulary import VOCABULARY_SCHEMA
from duia_spark.lakehouse import Lakehouse
from duia_spark.scoring.candidates import candidate_features, check_score_config
from duia_spark.stages.day_inputs import MissingInputError
from duia_spark.stages.score import MODEL_FILES, NoChampionError
from duia_spark.training.pyfunc import load_ranker

from .conftest import ACTIVE_USERS, IDLE_USERS, D, run_score, with_score


def _features_as_of_d(spark, lake, cfg, pairs):
    day = F.lit(D)
    return candidate_features(
        spark.createDataFrame(pairs, "user_id string, item_id string"),
        D,
        lake.read("user_activity").where(F.col("activity_date") == day),
        lake.read("user_sequences").where(F.col("as_of_date") == day),
        lake.read("item_stats").where(F.col("stats_date") == day),
        lake.read_or_empty("vocabulary", VOCABULARY_SCHEMA),
        None,
        lake.read("item_features"),
        cfg.sequences,
        cfg.item_stats,
    ).toPandas()


@pytest.mark.slow
def test_cluster_candidates_are_items_consumed_positively_by_users_of_the_same_cluster(
    spark, scoring_world, scoring_cfg, tmp_path
):
    cfg = with_score(scoring_cfg, "gold/scores_cluster", generator="cluster", top_k=50)
    assert run_score(cfg) == 0
    scores = Lakehouse(spark, cfg).read("scores").toPandas()
    assert len(scores) > 0 and set(scores["user_id"]) <= set(ACTIVE_USERS)

    # Clusters recomputed in-process: the user memory's level-1 winner of each user.
    tracking.configure_mlflow(cfg)
    model_dir = tracking.download_model_artifacts(cfg, "1", str(tmp_path))
    model = load_ranker(*[str(tracking.artifact_file(model_dir, k)) for k in MODEL_FILES])
    users = sorted(set(ACTIVE_USERS))
    feats = _features_as_of_d(spark, scoring_world, cfg, [(u, None) for u in users])
    batch = to_batch(pandas_to_columns(feats[[*ID_COLUMNS, *ARRAY_COLUMNS]]), cfg=model.cfg)
    with torch.no_grad():
        parent = model(batch)["aux"]["user_retrieval"].parent.numpy()
    cluster = dict(zip(feats["user_id"], parent.tolist(), strict=True))

    events = scoring_world.read("events").toPandas()
    recent = events[
        (events["event_date"] >= D - dt.timedelta(days=cfg.score.cluster_window_days))
        & (events["long_view"] == 1)
    ]
    seen = set(zip(events["user_id"], events["item_id"], strict=True))
    for user, item in zip(scores["user_id"], scores["item_id"], strict=True):
        mates = {u for u in cluster if cluster[u] == cluster[user]}
        assert item in set(recent.loc[recent["user_id"].isin(mates), "item_id"])
        assert (user, item) not in seen


@pytest.mark.slow
def test_the_table_generator_scores_every_user_of_the_day_on_the_supplied_pairs(
    spark, scoring_world, scoring_cfg, tmp_path
):
    table = str(tmp_path / "candidates")
    pairs = [
        ("u1", "v40"),
        ("u1", "v39"),
        (IDLE_USERS[0], "v38"),  # in user_activity, not active: scored with users=all
        ("u999", "v37"),  # not in user_activity: never scored
    ]
    spark.createDataFrame(pairs, "user_id string, item_id string").write.parquet(table)
    seen = scoring_world.read("events").where("user_id = 'u1'").select("item_id").toPandas()
    cfg = with_score(
        scoring_cfg, "gold/scores_table", generator="table", candidate_table=table, users="all"
    )
    assert run_score(cfg) == 0
    got = Lakehouse(spark, cfg).read("scores").toPandas()
    expected = {p for p in pairs[:3] if not (p[0] == "u1" and p[1] in set(seen["item_id"]))}
    assert set(zip(got["user_id"], got["item_id"], strict=True)) == expected


def test_scoring_without_a_champion_says_to_train_and_evaluate_first(scoring_cfg, tmp_path):
    empty = dataclasses.replace(
        scoring_cfg,
        mlflow=dataclasses.replace(
            scoring_cfg.mlflow, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}"
        ),
    )
    with pytest.raises(NoChampionError, match="train and evaluate first"):
        run_score(empty)


@pytest.mark.slow
def test_scoring_a_date_without_user_activity_fails_naming_the_segment_stage(
    scoring_world, scoring_cfg
):
    with pytest.raises(MissingInputError, match=r"user_activity.*duia segment"):
        run_score(scoring_cfg, day=D + dt.timedelta(days=3))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"generator": "random"}, "score.generator"),
        ({"users": "everyone"}, "score.users"),
        ({"popular_window_days": 5}, "score.popular_window_days"),
        ({"popular_metric": "hate"}, "score.popular_metric"),
        ({"generator": "table"}, "score.candidate_table"),
        ({"top_k": 0}, "score.top_k"),
    ],
)
def test_a_bad_score_setting_fails_naming_its_key(change, key, scoring_cfg):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_score_config(dataclasses.replace(ScoreConfig(), **change), scoring_cfg.item_stats)
