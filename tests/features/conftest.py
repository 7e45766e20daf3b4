"""Fixtures for the feature-job tests: events as DataFrames / in bronze, running a stage."""

from __future__ import annotations

import pytest

from .hand_built import events_frame, run_stage_in


@pytest.fixture
def events_df(spark):
    return lambda rows: events_frame(spark, rows)


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

    def run(stage: str, *argv: str, config=None):
        return run_stage_in(config or cfg, stage, *argv)

    return run
