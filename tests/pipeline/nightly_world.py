"""One nightly world per test session, shared by the pipeline and notebook tests: a tiny
generated dataset, two days backfilled, then two nightly runs (the second warm-starts
from the first night's champion). Building it is the expensive part; the tests read it."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_lake import small_model_overrides
from tiny_spark import tiny_spark_overrides

START = dt.date(2026, 1, 1)
TRAIN_DAYS = 2  # the fewest that train and validate; the nights run every stage
NIGHT1 = START + dt.timedelta(days=TRAIN_DAYS)
NIGHT2 = NIGHT1 + dt.timedelta(days=1)


@dataclass
class NightlyWorld:
    state: Path
    raw: Path
    overrides: list[str]
    failed_first: tuple[int, str]  # (exit code, stdout) of `--only evaluate` before training
    nights: list[tuple[int, str]]  # (exit code, stdout) of each nightly run


def world_overrides(state: Path) -> list[str]:
    return [
        f"lakehouse.root={state / 'lake'}",
        f"mlflow.tracking_uri=sqlite:///{state / 'mlflow.db'}",
        f"mlflow.artifact_root={state / 'art'}",
        f"train.checkpoint_dir={state / 'ck'}",
        f"train.petastorm_cache_dir={state / 'ps'}",
        f"evaluate.truth_dir={state / 'raw' / 'truth'}",
        f"train.train_days={TRAIN_DAYS}",
        *[o for o in small_model_overrides() if not o.startswith("train.epochs")],
        "train.epochs=1",
        # These nights check the DUIA path end to end (warm start, cluster memory in the
        # notebooks); whether one epoch on a tiny world beats PLE is noise, so the
        # baseline guard, which has its own test (tests/evaluation), is off here.
        "evaluate.baseline_guard=false",
        # For notebook kernels, which start their own small Spark driver.
        *tiny_spark_overrides(),
        "spark.driver_memory=1g",
    ]


def run_cli(argv: list[str], flags: list[str]) -> tuple[int, str]:
    from duia_spark.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([*argv, *flags])
    print(out.getvalue())
    return rc, out.getvalue()


@pytest.fixture(scope="session")
def nightly_world(spark, tmp_path_factory) -> NightlyWorld:
    state = tmp_path_factory.mktemp("nightly_world")
    overrides = world_overrides(state)
    flags = [x for o in overrides for x in ("--set", o)]
    raw = state / "raw"
    last_backfill = str(NIGHT1 - dt.timedelta(days=1))
    for argv in (
        [
            "generate",
            "--out",
            str(raw),
            "--users",
            "150",
            "--items",
            "60",
            "--days",
            str(TRAIN_DAYS + 2),
            "--seed",
            "5",
        ],
        ["ingest", "--path", str(raw), "--date", str(START), "--end-date", last_backfill],
        ["backfill", "--date", str(START), "--end-date", last_backfill],
    ):
        rc, _ = run_cli(argv, flags)
        assert rc == 0, f"duia {argv[0]} failed"
    failed_first = run_cli(["nightly", "--date", str(NIGHT1), "--only", "evaluate"], flags)
    nights = [
        run_cli(["nightly", "--date", str(n), "--raw", str(raw)], flags) for n in (NIGHT1, NIGHT2)
    ]
    return NightlyWorld(state, raw, overrides, failed_first, nights)
