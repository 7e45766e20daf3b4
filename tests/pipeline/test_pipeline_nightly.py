"""The whole nightly pipeline on a tiny generated dataset: two nights, the second one
warm-starting its cluster memory from the first night's champion."""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F
from tiny_lake import small_model_overrides

from duia_spark.cli import main

START = dt.date(2026, 1, 1)
NIGHT1, NIGHT2 = START + dt.timedelta(days=4), START + dt.timedelta(days=5)


@pytest.mark.slow
def test_two_nights_run_end_to_end_warm_start_and_rerun_skips_finished_stages(
    spark, tmp_path, capsys
):
    raw = tmp_path / "raw"
    sets = [
        f"lakehouse.root={tmp_path / 'lake'}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp_path / 'art'}",
        f"train.checkpoint_dir={tmp_path / 'ck'}",
        f"train.petastorm_cache_dir={tmp_path / 'ps'}",
        f"evaluate.truth_dir={raw / 'truth'}",
        "train.train_days=4",
        *[o for o in small_model_overrides() if not o.startswith("train.epochs")],
        "train.epochs=1",
    ]
    flags = [x for s in sets for x in ("--set", s)]

    def duia(*argv):
        return main([*argv, *flags])

    assert (
        duia(
            "generate",
            "--out",
            str(raw),
            "--users",
            "150",
            "--items",
            "60",
            "--days",
            "6",
            "--seed",
            "5",
        )
        == 0
    )
    assert (
        duia(
            "ingest",
            "--path",
            str(raw),
            "--date",
            str(START),
            "--end-date",
            str(NIGHT1 - dt.timedelta(days=1)),
        )
        == 0
    )
    assert (
        duia("backfill", "--date", str(START), "--end-date", str(NIGHT1 - dt.timedelta(days=1)))
        == 0
    )
    # Evaluating before anything was trained fails, is recorded, and names the stage.
    assert duia("nightly", "--date", str(NIGHT1), "--only", "evaluate") == 1
    assert "evaluate failed" in capsys.readouterr().out
    for night in (NIGHT1, NIGHT2):
        assert duia("nightly", "--date", str(night), "--raw", str(raw)) == 0
    out = capsys.readouterr().out
    assert "simulated feed" in out and "quality gate: PASSED" in out

    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse

    lake = Lakehouse(spark, load_config(overrides=sets))
    ledger = lake.read("run_ledger")
    assert ledger.where(F.col("status") != "succeeded").count() == 0
    assert ledger.where(F.col("run_date") == NIGHT2).count() == 9

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    v2 = client.get_model_version("duia-ranker", "2")
    assert v2.tags["data_date"] == str(NIGHT2)
    assert client.get_run(v2.run_id).data.tags["warm_start_version"] == "1"  # stream clustering
    if lake.exists("scores"):
        assert lake.read("scores").where(F.col("score_date") == NIGHT2).count() > 0

    assert duia("nightly", "--date", str(NIGHT2), "--raw", str(raw)) == 0
    assert "running nothing" in capsys.readouterr().out
