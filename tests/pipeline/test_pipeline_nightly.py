"""The whole nightly pipeline on a tiny generated dataset: two nights, the second one
warm-starting its cluster memory from the first night's champion."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from nightly_world import NIGHT1, NIGHT2, TRAIN_DAYS, run_cli
from pyspark.sql import functions as F

from duia_spark.data.sequences import build_user_sequences


@pytest.mark.slow
def test_a_stage_that_fails_exits_non_zero_and_names_itself(nightly_world):
    rc, out = nightly_world.failed_first
    assert rc == 1 and "evaluate failed" in out and "resume at evaluate" in out


@pytest.mark.slow
def test_two_nights_run_end_to_end_and_the_second_warm_starts(spark, nightly_world):
    for rc, out in nightly_world.nights:
        assert rc == 0, out
    out = nightly_world.nights[0][1]
    assert "simulated feed" in out and "quality gate: PASSED" in out and "ple (run" in out

    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse

    lake = Lakehouse(spark, load_config(overrides=nightly_world.overrides))
    ledger = lake.read("run_ledger")
    assert ledger.where(F.col("status") != "succeeded").count() == 0
    assert ledger.where(F.col("run_date") == NIGHT2).count() == 9
    assert lake.read("scores").where(F.col("score_date") == NIGHT2).count() > 0

    mlflow.set_tracking_uri(f"sqlite:///{nightly_world.state / 'mlflow.db'}")
    client = MlflowClient()
    v2 = client.get_model_version("duia-ranker", "2")
    assert v2.tags["data_date"] == str(NIGHT2)
    assert client.get_run(v2.run_id).data.tags["warm_start_version"] == "1"  # stream clustering


@pytest.mark.slow
def test_the_second_night_continues_each_model_on_the_new_day_and_the_first_trained_the_window(
    spark, nightly_world
):
    first, second = (out for _, out in nightly_world.nights)
    day1 = NIGHT1  # the first model's data date: the day night 2 trains on
    window = f"{day1 - dt.timedelta(days=TRAIN_DAYS)}..{day1 - dt.timedelta(days=1)}"
    assert f"[train] full training on {window}: no earlier model of this variant" in first
    # Tonight both models train on the one day since their earlier model's data date:
    # ple+duia continues the champion (version 1), the ple baseline its own last run.
    assert (
        f"[train] incremental training on {day1}: continues version 1 (data date {day1}) on "
        "the day since" in second
    )
    assert second.count(f"[train] incremental training on {day1}: continues ") == 2
    assert "[train] starts from the weights, cluster memories and optimizer state of version 1" in (
        second
    )

    mlflow.set_tracking_uri(f"sqlite:///{nightly_world.state / 'mlflow.db'}")
    client = MlflowClient()
    v1, v2 = (client.get_model_version("duia-ranker", v) for v in ("1", "2"))
    run = client.get_run(v2.run_id)
    assert v1.tags["training_mode"] == "full" and v2.tags["training_mode"] == "incremental"
    assert run.data.tags["lineage.train_dates"] == str(day1)
    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse

    samples = Lakehouse(spark, load_config(overrides=nightly_world.overrides)).read("samples")
    day_rows = samples.where(F.col("sample_date") == day1).count()
    assert run.data.tags["lineage.train_rows"] == str(day_rows)  # that one day's rows
    assert v2.tags["last_full_retrain"] == v1.tags["data_date"]
    assert [a.path for a in client.list_artifacts(v2.run_id, "optimizer")] == [
        "optimizer/optimizer.pt"
    ]
    history = mlflow.artifacts.download_artifacts(run_id=v2.run_id, artifact_path="history.json")
    assert json.loads(Path(history).read_text())["history"][0]["epoch"] == 0  # v1, validated


@pytest.mark.slow
def test_each_night_gives_one_sample_per_exposure_and_an_incremental_snapshot_equal_to_a_rebuild(
    spark, nightly_world
):
    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse

    cfg = load_config(overrides=nightly_world.overrides)
    lake = Lakehouse(spark, cfg)
    events, samples = lake.read("events"), lake.read("samples")
    for night in (NIGHT1, NIGHT2):
        n_events = events.where(F.col("event_date") == night).count()
        assert samples.where(F.col("sample_date") == night).count() == n_events > 0
    assert samples.where(F.size("hist_items") != cfg.sequences.exposures_len).isEmpty()
    assert samples.where((F.col("user_idx") < 1) | (F.col("item_idx") < 1)).isEmpty()
    # Advanced night after night since the first backfilled day, it equals a rebuild.
    snapshot = lake.read("user_sequences").where(F.col("as_of_date") == NIGHT2)
    assert sorted(snapshot.collect()) == sorted(
        build_user_sequences(events, NIGHT2, cfg.sequences).collect()
    )


@pytest.mark.slow
def test_rerunning_a_finished_night_skips_every_stage(nightly_world):
    flags = [x for o in nightly_world.overrides for x in ("--set", o)]
    rc, out = run_cli(["nightly", "--date", str(NIGHT2), "--raw", str(nightly_world.raw)], flags)
    assert rc == 0 and "running nothing" in out
