"""`duia score` with the popular generator: who is scored, what is excluded, how rows rank,
and that Spark's scores are the in-process model's scores."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from pyspark.sql import functions as F

from duia_spark import tracking
from duia_spark.data.vocabulary import VOCABULARY_SCHEMA
from duia_spark.scoring.candidates import candidate_features
from duia_spark.stages.score import MODEL_FILES
from duia_spark.training.pyfunc import load_ranker, score_frame

from .conftest import ACTIVE_USERS, IDLE_USERS, D, run_score

TASKS = ["click", "long_view", "like"]


@pytest.mark.slow
def test_scores_land_for_the_users_active_in_the_window_and_no_one_else(popular_scores):
    assert set(popular_scores["user_id"]) == set(ACTIVE_USERS)
    assert not set(popular_scores["user_id"]) & set(IDLE_USERS)
    assert (popular_scores["model_version"] == "1").all()
    assert (popular_scores["score_date"].astype(str) == str(D)).all()


@pytest.mark.slow
def test_items_a_user_was_already_exposed_to_are_never_scored(scoring_world, popular_scores):
    seen = (
        scoring_world.read("events")
        .where(F.col("event_date") < F.lit(D))
        .select("user_id", "item_id")
        .distinct()
        .toPandas()
    )
    assert len(seen.merge(popular_scores, on=["user_id", "item_id"])) == 0
    # The exclusion mattered: every scored user had been exposed to some pool items.
    pool = set(popular_scores["item_id"])
    exposed = seen[seen["item_id"].isin(pool) & seen["user_id"].isin(ACTIVE_USERS)]
    assert exposed["user_id"].nunique() == len(ACTIVE_USERS)


@pytest.mark.slow
def test_each_user_keeps_at_most_top_k_rows_ranked_by_the_combined_score(
    scoring_world, popular_scores, scoring_cfg
):
    sc = scoring_cfg.score
    stats = scoring_world.read("item_stats").where(F.col("stats_date") == F.lit(D)).toPandas()
    pool = set(
        stats.sort_values(["long_view_7d", "item_id"], ascending=[False, True])
        .query("long_view_7d > 0")["item_id"]
        .head(sc.popular_items)
    )
    events = scoring_world.read("events").toPandas()
    assert not popular_scores.duplicated(["user_id", "item_id"]).any()
    for user, rows in popular_scores.groupby("user_id"):
        unseen = pool - set(events.loc[events["user_id"] == user, "item_id"])
        n = min(sc.top_k, sc.max_candidates_per_user, len(unseen))
        assert len(rows) == n and set(rows["item_id"]) <= unseen
        rows = rows.sort_values("rank")
        assert rows["rank"].tolist() == list(range(1, n + 1))
        assert np.all(np.diff(rows["score"].to_numpy()) <= 0)
    assert (popular_scores.groupby("user_id").size() == sc.top_k).any()


@pytest.mark.slow
def test_the_combined_score_is_the_weighted_sum_of_the_task_scores(popular_scores, scoring_cfg):
    w = scoring_cfg.score.task_weights
    expected = sum(w[t] * popular_scores[f"score_{t}"].astype(np.float64) for t in TASKS)
    np.testing.assert_allclose(popular_scores["score"], expected, rtol=1e-9)
    # Only the model's tasks get a column; follow/comment/share weights are ignored.
    task_columns = [c for c in popular_scores.columns if c.startswith("score_")]
    assert task_columns == [*[f"score_{t}" for t in TASKS], "score_date"]


@pytest.mark.slow
def test_spark_scores_equal_in_process_score_frame_for_the_same_rows(
    spark, scoring_world, scoring_cfg, popular_scores
):
    cfg, lake = scoring_cfg, scoring_world
    pairs = spark.createDataFrame(popular_scores[["user_id", "item_id"]])
    day = F.lit(D)
    features = candidate_features(
        pairs,
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
    with tempfile.TemporaryDirectory() as tmp:
        tracking.configure_mlflow(cfg)
        model_dir = tracking.download_model_artifacts(cfg, "1", tmp)
        files = [str(tracking.artifact_file(model_dir, k)) for k in MODEL_FILES]
        model = load_ranker(*files)
    local = score_frame(model, features)
    local[["user_id", "item_id"]] = features[["user_id", "item_id"]]
    both = popular_scores.merge(local, on=["user_id", "item_id"])
    assert len(both) == len(popular_scores)
    for t in TASKS:
        np.testing.assert_allclose(both[f"score_{t}"], both[t], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_rerunning_the_date_replaces_its_scores_instead_of_adding_to_them(
    scoring_world, scoring_cfg, popular_scores
):
    assert run_score(scoring_cfg) == 0
    again = scoring_world.read("scores").where(F.col("score_date") == F.lit(D)).toPandas()
    assert len(again) == len(popular_scores)
    assert not again.duplicated(["user_id", "item_id"]).any()
    key = ["user_id", "item_id"]
    merged = popular_scores.merge(again, on=key, suffixes=("", "_again"))
    assert len(merged) == len(popular_scores)
    assert (merged["rank"] == merged["rank_again"]).all()
    np.testing.assert_allclose(merged["score"], merged["score_again"], rtol=1e-6)


@pytest.mark.parametrize("metric", ["exposures", "long_view"])
def test_the_popular_pool_is_ranked_by_the_configured_count(spark, metric, scoring_cfg):
    import dataclasses

    from duia_spark.scoring.candidates import popular_items

    rows = [("a", 5, 1), ("b", 9, 0), ("c", 2, 2), ("d", 0, 0)]
    stats = spark.createDataFrame(
        [(i, e, lv, D) for i, e, lv in rows],
        "item_id string, exposures_7d long, long_view_7d long, stats_date date",
    )
    sc = dataclasses.replace(scoring_cfg.score, popular_metric=metric, popular_items=2)
    got = [r["item_id"] for r in popular_items(stats, D, sc, scoring_cfg.item_stats).collect()]
    assert got == (["b", "a"] if metric == "exposures" else ["c", "a"])
