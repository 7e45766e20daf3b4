"""Fixtures for the feature-job tests: events as DataFrames / in bronze, running a stage."""

from __future__ import annotations

import pytest

from duia_spark.data.schema import EVENTS_SCHEMA


@pytest.fixture
def events_df(spark):
    def make(rows: list[dict]):
        return spark.createDataFrame(
            [tuple(r.get(f.name) for f in EVENTS_SCHEMA.fields) for r in rows], EVENTS_SCHEMA
        )

    return make


@pytest.fixture
def write_events(lake, events_df):
    def write(rows: list[dict]):
        df = events_df(rows)
        lake.replace_partitions(df, "events", "event_date", {r["event_date"] for r in rows})
        return df

    return write


@pytest.fixture
def run_stage(cfg):
    """Run `duia <stage> [args]` in-process against the test's lakehouse; returns the exit code."""
    from duia_spark.cli import build_parser
    from duia_spark.stages import load_stage

    def run(stage: str, *argv: str, config=None):
        args = build_parser().parse_args([stage, *argv])
        return load_stage(stage).run(config or cfg, args)

    return run
