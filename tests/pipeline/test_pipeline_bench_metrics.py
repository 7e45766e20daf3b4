"""The scale benchmark's instrumentation (bench/pipeline.py, bench/spark_metrics.py) on a
tiny lakehouse: every stage of the night gets Spark's task metrics and a ceiling pass,
and a size that was not run is reported as NOT RUN. No timing is asserted."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from bench_module import load_bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    return load_bench("pipeline")


@pytest.fixture(scope="module")
def tiny_night(bench, spark, base_cfg, tmp_path_factory) -> dict:
    """Four tiny daily drops; the night of the last with two days of history, one backfilled."""
    from duia_spark.config import GeneratorConfig
    from duia_spark.sources.synthetic import generate

    state = tmp_path_factory.mktemp("bench_night")
    raw = state / "raw"
    gen = GeneratorConfig(users=80, items=40, days=4, seed=3, formats=["parquet"], partitions=2)
    generate(spark, gen, str(raw), log=lambda _: None)
    lake = dataclasses.replace(base_cfg.lakehouse, root=str(state / "lake"))
    cfg = dataclasses.replace(base_cfg, lakehouse=lake)
    return bench.run_night(
        spark, cfg, str(raw), history_days=2, backfill_days=1, full_rebuild=False
    )


def _night_steps(run: dict) -> list[dict]:
    return [s for s in run["steps"] if s["kind"] == "night"]


def test_every_night_stage_is_measured_with_its_ceiling(bench, tiny_night):
    steps = _night_steps(tiny_night)
    assert [s["step"] for s in steps] == bench.NIGHT_STEPS
    for s in steps:
        assert s["input_rows"] > 0 and s["event_rows"] > 0, s["step"]
        assert s["wall_s"] > 0 and s["jobs"] >= 1 and s["tasks"] >= 1, s["step"]
        for key in (
            "shuffle_read_bytes",
            "shuffle_write_bytes",
            "memory_spilled_bytes",
            "disk_spilled_bytes",
        ):
            assert s[key] >= 0 and s["ceiling"][key] >= 0, (s["step"], key)
        c = s["ceiling"]
        assert c["wall_s"] > 0 and c["jobs"] >= 1, s["step"]
        # The ceiling reads every input row (Delta's own log reads may add a few).
        assert c["input_records"] >= s["input_rows"], s["step"]
        assert s["python_peak_mb"] > 0 and s["jvm_peak_mb"] > 0, s["step"]


def test_shuffle_bytes_are_read_from_sparks_task_metrics(tiny_night):
    """Joins and groupBys shuffle: all-zero metrics would mean nothing was read."""
    steps = _night_steps(tiny_night)
    assert sum(s["shuffle_write_bytes"] for s in steps) > 0
    assert sum(s["shuffle_read_bytes"] for s in steps) > 0
    assert sum(s["ceiling"]["shuffle_write_bytes"] for s in steps) > 0


def test_the_setup_is_measured_but_carries_no_ceiling(tiny_night):
    setup = [s for s in tiny_night["steps"] if s["kind"] == "setup"]
    assert [s["step"] for s in setup] == [
        "ingest history (2 days)",
        "backfill 1 day(s), 4 stages",
    ]
    assert all(s["wall_s"] > 0 and s["jobs"] >= 1 and "ceiling" not in s for s in setup)
    assert tiny_night["history_days"] == 2 and tiny_night["events_total"] > 0


def test_a_size_that_was_not_run_reads_not_run(bench, tiny_night):
    goals = bench.goal_rows({1: tiny_night}, None)
    assert [status for _, _, status in goals] == ["NOT RUN"] * 4
    assert all("not" in measured for _, measured, _ in goals)

    history = tiny_night | {"scale": 1}
    goals = bench.goal_rows({1: tiny_night}, history)
    assert goals[1][2] in ("MET", "MISSED") and "1.00x" in goals[1][1]
    assert [g[2] for i, g in enumerate(goals) if i != 1] == ["NOT RUN"] * 3


def test_the_report_names_every_stage_and_each_goals_status(bench, tiny_night):
    args = argparse.Namespace(history_days=0, set=[], days=3)
    run = tiny_night | {"users": 80, "items": 40, "generate_s": None}
    text = bench.report({1: run}, None, args, "python bench/pipeline.py --scales 1")
    print(text)
    for name in bench.NIGHT_STEPS:
        assert f"| {name} |" in text
    assert text.count("| NOT RUN |") == 4
