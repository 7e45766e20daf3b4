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
from duia_spark.evaluation.auc import auc
from duia_spark.stages import train as train_stage
from duia_spark.training.dataset import MissingColumnError
from duia_spark.training.metrics import selection_value

VAL_DAY = FIRST_DAY + dt.timedelta(days=N_DAYS - 1)


def run_train(cfg, **kw) -> int:
    args = argparse.Namespace(
        date=VAL_DAY, resume=False, cold_start=False, full=False, variant=None, no_register=False
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
    if "served.auc.click.all" in run.data.metrics:  # residual fusion: the model after the gate
        best = {"auc/click/all": run.data.metrics["served.auc.click.all"]}
    assert auc(val["click"].to_numpy(), scores["click"].to_numpy()) == pytest.approx(
        best["auc/click/all"], abs=1e-6
    )


@pytest.mark.slow
def test_a_stopped_run_registers_nothing_and_resume_finishes_and_registers(tiny_lake, train_cfg):
    cfg = with_train(train_cfg, epochs=2, train_days=3, stop_after_epochs=1)
    assert run_train(cfg) == 0
    client = MlflowClient()
    assert client.search_model_versions(f"name='{cfg.mlflow.registered_model}'") == []
    assert run_train(with_train(cfg, stop_after_epochs=0), resume=True) == 0
    (mv,) = client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")
    assert [h["epoch"] for h in run_history(mv.run_id)] == [1, 2]


@pytest.mark.slow
def test_a_residual_model_records_where_its_head_serves_and_why(tiny_lake, train_cfg):
    cfg = with_train(train_cfg, epochs=1, train_days=3)
    assert cfg.model.enhancement_fusion == "residual"  # the shipped default
    assert run_train(cfg) == 0
    (mv,) = MlflowClient().search_model_versions(f"name='{cfg.mlflow.registered_model}'")
    run = MlflowClient().get_run(mv.run_id)
    metrics = run.data.metrics
    kept = [s for s in ("low", "mid", "high") if metrics.get(f"residual_gate.{s}.kept") == 1.0]
    assert {f"residual_gate.{s}.kept" for s in ("low", "mid", "high")} <= set(metrics)
    assert run.data.tags["residual_head_serves"] == (",".join(kept) or "none")
    for s in kept:  # a served segment: the head validated better than the base alone
        assert metrics[f"residual_gate.{s}.with_head"] > metrics[f"residual_gate.{s}.base"]


@pytest.mark.slow
def test_a_resumed_run_reproduces_the_uninterrupted_run_exactly(
    spark, tiny_lake, train_cfg, tmp_path
):
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    from duia_spark.training.dataset import deterministic_layout, select_training_columns
    from duia_spark.training.loop import TrainJob, train_rank

    model_cfg = train_stage.model_config_for_data(train_cfg, tiny_lake)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, (tmp_path / "ps").as_uri())
    samples = tiny_lake.read("samples")

    def converters():
        t = make_spark_converter(
            deterministic_layout(
                select_training_columns(samples.where(f"sample_date < '{VAL_DAY}'"), model_cfg), 4
            )
        )
        v = make_spark_converter(
            deterministic_layout(
                select_training_columns(samples.where(f"sample_date = '{VAL_DAY}'"), model_cfg), 2
            )
        )
        t.file_urls, v.file_urls = sorted(t.file_urls), sorted(v.file_urls)
        return t, v

    def train(name, ck, resume=False, stop=0):
        t, v = converters()
        # Weight averaging on: its running mean is part of what a resume restores.
        tc = dataclasses.replace(
            train_cfg.train, epochs=2, stop_after_epochs=stop, average_weights=True
        )
        try:
            train_rank(
                TrainJob(
                    model_cfg,
                    tc,
                    t,
                    v,
                    1200,
                    400,
                    str(tmp_path / name),
                    str(tmp_path / ck),
                    resume=resume,
                )
            )
        finally:
            t.delete()
            v.delete()
        done = tmp_path / name / "history.json"
        return json.loads(done.read_text())["history"] if done.exists() else None

    straight = train("straight", "a")
    assert train("stopped", "b", stop=1) is None  # stopped after epoch 1: no result
    resumed = train("resumed", "b", resume=True)
    assert [h["epoch"] for h in resumed] == [1, 2]
    for a, b in zip(straight, resumed, strict=True):
        assert a["loss"] == b["loss"]
        assert a["auc/click/all"] == b["auc/click/all"]
        assert a["selection/averaged_weights"] == b["selection/averaged_weights"]
    assert [h["averaged_epochs"] for h in straight] == [1.0, 2.0]
    assert [h["memory_checksum"] for h in straight] == [h["memory_checksum"] for h in resumed]
    # After epoch 1 the mean is the epoch's own weights: it validates the same, not better.
    assert straight[0]["kept_averaged_weights"] == 0.0
    assert straight[0]["selection/averaged_weights"] == straight[0]["selection/epoch_weights"]


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


def test_the_kept_epoch_is_chosen_on_one_metric_or_the_mean_of_several():
    record = {"auc/click/all": 0.72, "gauc/click/all": 0.62, "auc/like/low": float("nan")}
    assert selection_value(record, "auc/click/all") == pytest.approx(0.72)
    assert selection_value(record, "auc/click/all+gauc/click/all") == pytest.approx(0.67)
    assert np.isnan(selection_value(record, "auc/click/all+auc/like/low"))  # one class only
    with pytest.raises(ValueError, match="'gauc/clik/all' is not a validation metric"):
        selection_value(record, "auc/click/all+gauc/clik/all")
    assert np.isnan(selection_value({"loss": 0.5}, "auc/click/all"))  # nothing validated
