"""One short nightly run on generated data: generate → ingest → backfill → checks."""

import argparse
import datetime as dt

import pytest
from pyspark.sql import functions as F

from duia_spark.config import GeneratorConfig
from duia_spark.data.generator import generate
from duia_spark.data.sequences import build_user_sequences


@pytest.mark.slow
def test_a_short_run_on_generated_data_gives_one_sample_per_exposure(
    spark, cfg, lake, run_stage, tmp_path
):
    gen = GeneratorConfig(users=40, items=15, days=3, seed=5, authors=6, categories=4, partitions=2)
    generate(spark, gen, str(tmp_path / "raw"))
    from duia_spark.stages import load_stage

    ingest = argparse.Namespace(
        source="synthetic", path=str(tmp_path / "raw"), date=None, end_date=None
    )
    assert load_stage("ingest").run(cfg, ingest) == 0
    first = dt.date.fromisoformat(gen.start_date)
    last = first + dt.timedelta(days=2)
    assert (
        run_stage("backfill", "--date", str(last - dt.timedelta(days=1)), "--end-date", str(last))
        == 0
    )

    events = lake.read("events")
    samples = lake.read("samples")
    for d in (last - dt.timedelta(days=1), last):
        n_events = events.where(F.col("event_date") == d).count()
        assert samples.where(F.col("sample_date") == d).count() == n_events > 0
    assert samples.where(F.size("hist_items") != cfg.sequences.exposures_len).isEmpty()
    assert samples.where((F.col("user_idx") < 1) | (F.col("item_idx") < 1)).isEmpty()
    # The incrementally advanced snapshot equals a rebuild from all history.
    snap = lake.read("user_sequences").where(F.col("as_of_date") == last)
    assert sorted(snap.collect()) == sorted(
        build_user_sequences(events, last, cfg.sequences).collect()
    )
