"""Training from Delta through Petastorm and TorchDistributor, tracked in MLflow."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from tiny_lake import FIRST_DAY, N_DAYS

from duia_spark import tracking
from duia_spark.stages import train as train_stage
from duia_spark.training.dataset import MissingColumnError
from duia_spark.training.metrics import auc

VAL_DAY = FIRST_DAY + dt.timedelta(days=N_DAYS - 1)


def run_train(cfg, **kw) -> int:
    args = argparse.Namespace(
        date=VAL_DAY, resume=False, cold_start=False, variant=None, no_register=False
    )
    for k, v in kw.items():
        setattr(args, k, v)
    return train_stage.run(cfg, args)


def with_train(cfg, **kw):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **kw))


def run_history(run_id: str) -> list[dict]:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="history.json")
    return json.loads(open(path).read())["history"]


@pytest.mark.slow
def test_two_processes_train_register_and_the_registered_model_scores_like_the_run(
    tiny_lake, train_cfg
):
    cfg = with_train(train_cfg, num_processes=2, train_days=3)
    assert run_train(cfg) == 0
    client = MlflowClient()
    mv = client.get_model_version(cfg.mlflow.registered_model, "1")
    assert mv.tags["data_date"] == str(VAL_DAY) and mv.tags["variant"] == "ple+duia"
    assert len(mv.tags["config_hash"]) == 12
    run = client.get_run(mv.run_id)
    history = run_history(mv.run_id)
    assert history[-1]["loss"] < history[0]["loss"]  # it learns
    assert all(h["rank_memory_spread"] == 0.0 for h in history)  # ranks agree on the memory
    assert run.data.tags["lineage.train_rows"] == "1200"
    assert "user_usage_entropy" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    assert arts == {
        "plots/training_curves.png",
        "plots/segment_auc.png",
        "plots/centre_usage.png",
        "plots/centre_projection.png",
    }
    # The registered version alone carries the cluster memory ...
    model_dir = tracking.download_model_artifacts(cfg, "1", str(cfg.resolve_path(cfg.state_dir)))
    assert tracking.artifact_file(model_dir, "cluster_memory").suffix == ".safetensors"
    # ... and scores the validation day exactly as the run measured it.
    val = tiny_lake.read("samples").where(f"sample_date = '{VAL_DAY}'").toPandas()
    scores = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model}/1").predict(val)
    best = max(history, key=lambda h: h["auc/click/all"])
    assert auc(val["click"].to_numpy(), scores["click"].to_numpy()) == pytest.approx(
        best["auc/click/all"], abs=1e-6
    )


@pytest.mark.slow
def test_a_stopped_run_registers_nothing_and_resumes_to_the_uninterrupted_result(
    tiny_lake, train_cfg
):
    cfg = with_train(train_cfg, epochs=2, train_days=3)
    assert run_train(cfg, variant="ple+duia") == 0
    client = MlflowClient()
    straight = run_history(client.get_model_version(cfg.mlflow.registered_model, "1").run_id)

    stopped = with_train(cfg, stop_after_epochs=1)
    assert run_train(stopped) == 0
    assert len(client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")) == 1
    assert run_train(cfg, resume=True, cold_start=True) == 0
    resumed = run_history(client.get_model_version(cfg.mlflow.registered_model, "2").run_id)
    for a, b in zip(straight, resumed, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["auc/click/all"] == pytest.approx(b["auc/click/all"], abs=1e-9)


def test_samples_missing_a_required_column_fail_naming_it(spark, tiny_lake, train_cfg):
    broken = tiny_lake.read("samples").drop("hist_items")
    tiny_lake.overwrite(broken, "samples")
    with pytest.raises(MissingColumnError, match="hist_items"):
        run_train(train_cfg)


def test_training_needs_samples_before_the_date(tiny_lake, train_cfg):
    with pytest.raises(ValueError, match="no training samples"):
        run_train(train_cfg, date=FIRST_DAY)


def test_auc_matches_a_hand_computed_case():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert auc(y, s) == pytest.approx(0.75)
    assert auc(y, np.ones(4)) == pytest.approx(0.5)
