"""Evaluation: Spark metrics agree with exact ones, the gate guards the champion alias,
and the simulated feed rewards the ranking that follows the ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from tiny_lake import FIRST_DAY, N_DAYS

from duia_spark.evaluation.auc import auc, gauc
from duia_spark.evaluation.gate import quality_gate
from duia_spark.evaluation.ranking_metrics import ranking_metrics
from duia_spark.evaluation.simulation import simulate_feeds
from duia_spark.stages import evaluate as evaluate_stage
from duia_spark.stages import train as train_stage

VAL_DAY = FIRST_DAY + dt.timedelta(days=N_DAYS - 1)


def test_spark_gauc_skips_users_with_one_class_like_numpy_on_rare_labels(spark):
    rng = np.random.default_rng(5)
    n = 3000
    users = rng.integers(0, 80, n)
    y = (rng.random(n) < 0.03).astype(int)  # rare: most users see no positive
    s = np.clip(0.3 * y + rng.random(n) * 0.8, 0, 1)
    pdf = pd.DataFrame(
        {
            "user_idx": users.astype("int32"),
            "segment": "low",
            "follow": y,
            "follow_known": 1,
            "m::follow": s,
        }
    )
    got = ranking_metrics(spark.createDataFrame(pdf), ["m"], ["follow"])["m"]
    assert got["gauc/follow/all"] == pytest.approx(gauc(users, y, s), abs=1e-9)
    assert got["gauc/follow/all"] > 0.6  # positives are scored higher within every user


def test_spark_gauc_counts_tied_scores_half_like_numpy(spark):
    rng = np.random.default_rng(11)
    n = 4000
    users = rng.integers(0, 60, n)
    y = (rng.random(n) < 0.4).astype(int)
    s = np.round(np.clip(0.2 * y + rng.random(n) * 0.8, 0, 1), 1)  # 11 values: many ties
    pdf = pd.DataFrame(
        {"user_idx": users.astype("int32"), "segment": "mid", "click": y, "click_known": 1,
         "m::click": s}
    )  # fmt: skip
    got = ranking_metrics(spark.createDataFrame(pdf), ["m"], ["click"])["m"]
    assert got["gauc/click/mid"] == pytest.approx(gauc(users, y, s), abs=1e-9)
    # ignoring the ties (each tie broken by row order) would give another number
    broken = s + np.arange(n) * 1e-9
    assert abs(gauc(users, y, broken) - gauc(users, y, s)) > 1e-4


def test_spark_auc_and_gauc_match_the_exact_numpy_values(spark):
    rng = np.random.default_rng(3)
    n = 3000
    users = rng.integers(0, 80, n)
    seg = np.array(["low", "mid", "high"])[users % 3]
    y = (rng.random(n) < 0.3).astype(int)
    s = np.clip(0.3 * y + rng.random(n) * 0.8, 0, 1)
    pdf = pd.DataFrame(
        {
            "user_idx": users.astype("int32"),
            "segment": seg,
            "click": y,
            "click_known": 1,
            "m::click": s,
        }
    )
    got = ranking_metrics(spark.createDataFrame(pdf), ["m"], ["click"])["m"]
    assert got["auc/click/all"] == pytest.approx(auc(y, s), abs=1e-4)
    low = seg == "low"
    assert got["auc/click/low"] == pytest.approx(auc(y[low], s[low]), abs=1e-4)
    assert got["gauc/click/all"] == pytest.approx(gauc(users, y, s), abs=1e-9)
    assert got["gauc/click/high"] == pytest.approx(
        gauc(users[seg == "high"], y[seg == "high"], s[seg == "high"]), abs=1e-9
    )


def test_the_gate_passes_without_a_champion_and_fails_a_worse_segment():
    tol = {"all": 0.0, "low": 0.01}
    assert quality_gate({"auc/click/all": 0.6}, None, "auc", "click", tol).passed
    champ = {"auc/click/all": 0.70, "auc/click/low": 0.70}
    assert quality_gate(
        {"auc/click/all": 0.71, "auc/click/low": 0.695}, champ, "auc", "click", tol
    ).passed
    result = quality_gate(
        {"auc/click/all": 0.71, "auc/click/low": 0.65}, champ, "auc", "click", tol
    )
    assert not result.passed and any("low" in r and "WORSE" in r for r in result.reasons)


def test_the_simulated_feed_rewards_rankings_that_follow_the_truth(spark):
    rows = []
    for u, segment in (("a", "low"), ("b", "high")):
        for k in range(6):
            p = k / 10  # item k is truly better for larger k
            rows.append((u, f"i{k}", segment, p, 1000.0 * k, float(k), float(-k)))
    df = spark.createDataFrame(
        rows,
        "user_id string, item_id string, segment string, p_long_view double, "
        "expected_play_ms double, good double, bad double",
    )
    out = {
        (r.model, r.segment): r
        for r in simulate_feeds(df, {"good": "good", "bad": "bad"}, 2).collect()
    }
    assert out[("good", "all")].uvc == pytest.approx(0.9)  # 0.5 + 0.4
    assert out[("oracle", "all")].uvc == pytest.approx(0.9)
    assert out[("bad", "low")].uvc == pytest.approx(0.1)  # 0.0 + 0.1
    assert out[("good", "high")].udt_s == pytest.approx(9.0)


def _train(cfg, **kw):
    args = argparse.Namespace(
        date=VAL_DAY, resume=False, cold_start=False, full=False, variant=None, no_register=False
    )
    vars(args).update(kw)
    return train_stage.run(cfg, args)


def _evaluate(cfg, **kw):
    args = argparse.Namespace(date=VAL_DAY, version=None, no_promote=False)
    vars(args).update(kw)
    return evaluate_stage.run(cfg, args)


def test_models_trained_on_other_feature_widths_are_named_and_left_out(cfg, capsys):
    from types import SimpleNamespace

    from duia_spark.data.samples import USER_DENSE_FEATURES, item_dense_features
    from duia_spark.model.config import ModelConfig
    from duia_spark.stages.evaluate import incompatible_models

    def payload(n_user_dense):
        mc = ModelConfig(
            n_user_dense=n_user_dense, n_item_dense=len(item_dense_features(cfg.item_stats))
        )
        return SimpleNamespace(model_config=lambda: mc)

    payloads = {"new": payload(len(USER_DENSE_FEATURES)), "champion": payload(8)}
    assert incompatible_models(payloads, cfg) == ["champion"]
    assert "champion was trained on other feature widths (user_dense width: model 8" in (
        capsys.readouterr().out
    )


def test_the_baseline_guard_names_the_baseline_that_beats_the_new_model_in_a_segment():
    from duia_spark.evaluation.gate import baseline_guard

    tol = {"all": 0.005, "low": 0.01}
    new = {"auc/click/all": 0.70, "auc/click/low": 0.66, "pos/click/all": 900, "pos/click/low": 300}
    ple = {"auc/click/all": 0.70, "auc/click/low": 0.68}
    guard = baseline_guard(new, {"ple": ple}, ["auc"], ["click"], tol, min_positives=100)
    assert guard.winner == "ple" and not guard.held
    assert "auc/click/low: new 0.6600 < ple 0.6800 - 0.01" in guard.reasons
    # within the tolerance the new model holds
    close = {**ple, "auc/click/low": 0.665}
    assert baseline_guard(new, {"ple": close}, ["auc"], ["click"], tol, 100).held
    # a segment with too few positives on the day is not guarded
    assert baseline_guard(new, {"ple": ple}, ["auc"], ["click"], tol, 500).held
    assert baseline_guard(new, {}, ["auc"], ["click"], tol, 100).held


@pytest.mark.slow
def test_a_duia_model_that_loses_to_the_nights_ple_baseline_or_fails_the_gate_never_serves(
    tiny_lake, train_cfg, capsys, tmp_path
):
    from duia_spark.training.registry import earlier_model

    cfg = dataclasses.replace(
        train_cfg,
        train=dataclasses.replace(train_cfg.train, epochs=2, train_days=3),
        evaluate=dataclasses.replace(train_cfg.evaluate, guard_min_positives=1),
    )
    # A DUIA model that never learns (learning rate 0) beside a PLE baseline that does.
    frozen = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.0))
    assert _train(frozen) == 0  # v1, ple+duia
    assert _train(cfg, variant="ple", no_register=True) == 0
    assert _evaluate(cfg) == 0
    out = capsys.readouterr().out
    assert (
        "baseline guard (new model vs the same night's baselines): LOST to the ple baseline" in out
    )
    assert "ple registered as v2 and is now 'champion'" in out
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    champ = client.get_model_version_by_alias(name, "champion")
    assert str(champ.version) == "2" and champ.tags["variant"] == "ple"
    assert "baseline beat v1 (ple+duia)" in champ.tags["promoted_because"]
    lost = client.get_model_version(name, "1")
    assert lost.tags["gate"] == "failed" and lost.tags["lost_to_baseline"] == "ple"
    # Re-running the evaluation registers nothing new.
    assert _evaluate(cfg, version="1") == 0
    assert len(client.search_model_versions(f"name='{name}'")) == 2
    # Tomorrow's DUIA model continues the DUIA line, not the baseline.
    tomorrow = VAL_DAY + dt.timedelta(days=1)
    assert earlier_model(cfg, "ple+duia", tomorrow, registered=True).version == "1"

    # A model that fails the gate against the champion is tagged and the champion stays.
    assert _train(cfg) == 0  # v3, ple+duia that learns
    strict = dataclasses.replace(
        cfg,
        evaluate=dataclasses.replace(
            cfg.evaluate, gate_tolerances={"all": -0.5}, baseline_guard=False
        ),
    )  # it must beat the champion by 0.5 AUC: impossible
    capsys.readouterr()
    assert _evaluate(strict) == 0
    out = capsys.readouterr().out
    assert "quality gate: FAILED" in out and "champion (v2)" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert client.get_model_version(name, "3").tags["gate"] == "failed"


def test_the_guard_has_its_own_tolerances_or_the_gates():
    from duia_spark.config import EvaluateConfig
    from duia_spark.evaluation.gate import baseline_guard

    gate_only = EvaluateConfig()
    assert gate_only.guard_tolerance_map == gate_only.gate_tolerances
    strict = EvaluateConfig(guard_tolerances={"all": 0.002, "low": 0.002})
    assert strict.guard_tolerance_map == {"all": 0.002, "low": 0.002}
    # A DUIA model 0.004 below the baseline passes the gate's bound and not the guard's.
    new = {
        "auc/click/all": 0.720,
        "auc/click/low": 0.716,
        "pos/click/all": 500,
        "pos/click/low": 400,
    }
    ple = {
        "auc/click/all": 0.722,
        "auc/click/low": 0.720,
        "pos/click/all": 500,
        "pos/click/low": 400,
    }
    args = (new, {"ple": ple}, ["auc"], ["click"])
    assert baseline_guard(*args, gate_only.guard_tolerance_map, min_positives=100).held
    assert not baseline_guard(*args, strict.guard_tolerance_map, min_positives=100).held


@pytest.mark.slow
def test_a_two_day_validation_window_trains_before_it_and_is_what_evaluate_scores(
    tiny_lake, train_cfg, capsys
):
    from pyspark.sql import functions as F

    cfg = dataclasses.replace(
        train_cfg,
        train=dataclasses.replace(train_cfg.train, epochs=1, train_days=2, validation_days=2),
        evaluate=dataclasses.replace(train_cfg.evaluate, baseline_guard=False),
    )
    day = dt.timedelta(days=1)
    window = f"{VAL_DAY - day}..{VAL_DAY}"
    assert _train(cfg) == 0
    out = capsys.readouterr().out
    assert f"training rows {VAL_DAY - 3 * day}..{VAL_DAY - 2 * day}" in out
    assert f"validation rows on {window}" in out
    assert _evaluate(cfg) == 0
    assert f"== evaluation of {VAL_DAY} (validation days {window}) ==" in capsys.readouterr().out
    client = MlflowClient()
    version = client.get_model_version(cfg.mlflow.registered_model, "1")
    assert client.get_run(version.run_id).data.tags["lineage.val_dates"] == window
    run = client.get_run(version.tags["evaluation_run"])
    assert run.data.tags["validation_dates"] == window
    both_days = tiny_lake.read("samples").where(
        F.col("sample_date").between(VAL_DAY - day, VAL_DAY)
    )
    positives = both_days.agg(F.sum(F.col("click") * F.col("click_known"))).first()[0]
    one_day = both_days.where(F.col("sample_date") == VAL_DAY)
    assert positives > one_day.agg(F.sum(F.col("click") * F.col("click_known"))).first()[0]
    assert run.data.metrics["new.pos.click.all"] == positives
