"""The whole-night benchmark's own parts (bench/night.py), without a night: the process-tree
memory sampler sees a child's memory, and the goals are judged from the recorded steps.
No timing is asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bench_module import load_bench


@pytest.fixture(scope="module")
def night():
    return load_bench("night")


def test_the_tree_peak_counts_a_child_process_memory(night):
    with night.TreePeak(every_s=0.05) as idle:
        pass
    child = (
        "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(1)"
    )
    with night.TreePeak(every_s=0.05) as busy:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert busy.peak_mb - idle.peak_mb > 250


def _step(stage: str, wall_s: float, **extra) -> dict:
    zero = dict.fromkeys(
        ["shuffle_read_bytes", "shuffle_write_bytes", "memory_spilled_bytes", "disk_spilled_bytes"],
        0,
    )
    peaks = {"python_peak_mb": 1.0, "jvm_peak_mb": 1.0, "tree_peak_mb": 1.0}
    return {"step": stage, "wall_s": wall_s, **zero, **peaks, **extra}


def _night(day: str, train_s: float, score_s: float | None, candidates=None, in_process=None):
    stages = {"ingest": 10.0, "train": train_s, "train-baselines": train_s, "evaluate": 5.0}
    steps = {s: _step(s, w) for s, w in stages.items()}
    if score_s is not None:
        steps["score"] = _step("score", score_s)
    run = {"variant": "ple+duia", "mode": "full", "train_rows": 100, "epochs": 2,
           "loop_samples_per_s": 10.0, "ceiling_samples_per_s": 20.0}  # fmt: skip
    return {"day": day, "steps": steps, "runs": [run, {**run, "variant": "ple"}],
            "candidates": candidates, "score_in_process_rows_per_s": in_process}  # fmt: skip


def test_goals_are_judged_from_the_recorded_stages(night):
    full = _night("2026-01-28", train_s=1000.0, score_s=None)
    fast = _night(
        "2026-01-29", train_s=100.0, score_s=600.0, candidates=6_000_000, in_process=15_000.0
    )
    lines = "\n".join(night.goals(full, fast, 16))
    assert "| 200 s vs 2000 s = 0.10x | MET |" in lines
    assert "= 0.67x | MET |" in lines  # 10,000 rows/s against 15,000 in-process
    assert "13.6 min | MET |" in lines  # 815 s

    slow = _night(
        "2026-01-29", train_s=500.0, score_s=2000.0, candidates=6_000_000, in_process=15_000.0
    )
    lines = "\n".join(night.goals(full, slow, 16))
    assert "= 0.50x | MISSED |" in lines  # incremental training: half a full retrain
    assert "= 0.20x | MISSED |" in lines  # scoring: 3,000 rows/s against 15,000
    assert "50.2 min | MISSED |" in lines.splitlines()[2]


def test_a_night_without_its_score_stage_says_so(night):
    table = "\n".join(night.stage_table(_night("2026-01-28", 1000.0, score_s=None)))
    assert "| score | not run" in table
    assert "2000 samples x epochs" not in table  # 100 rows x 2 epochs per model
    assert "| train | 200 samples x epochs |" in table
