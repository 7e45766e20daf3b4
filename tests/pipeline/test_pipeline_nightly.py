"""The whole nightly pipeline on a tiny generated dataset: two nights, the second one
warm-starting its cluster memory from the first night's champion."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from nightly_world import NIGHT1, NIGHT2, run_cli
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
