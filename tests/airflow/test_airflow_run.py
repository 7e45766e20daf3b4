"""Airflow runs the nightly DAG for one date, task by task, on a tiny generated world.

Runs in the Airflow venv (`make test-airflow`). The world is built in one process of the
main venv through the `duia` CLI (generate; ingest and backfill two days); then
`airflow dags test` runs duia_nightly for the third day with a throw-away AIRFLOW_HOME
(sqlite metadata): each task spark-submits its stage job with the main venv, as a worker
would. The night's raw drop first is missing: ingest fails with its one-line reason and
nothing after it runs. Then the drop arrives, and a re-run of the date succeeds and writes
gold/scores for it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_airflow_dag import STAGES  # the DAG's tasks, in order
from tiny_spark import TINY_DATA_SPARK  # tests/: no Spark import, fine in this venv

REPO = Path(__file__).resolve().parents[2]
MAIN_VENV = Path(os.environ.get("DUIA_VENV") or REPO / ".venv").resolve()
AIRFLOW = Path(os.environ.get("AIRFLOW_BIN") or Path(sys.executable).parent / "airflow")
START = dt.date(2026, 1, 1)
TRAIN_DAYS = 2  # the fewest that train and validate; every stage still runs
NIGHT = START + dt.timedelta(days=TRAIN_DAYS)  # the days before backfilled, this one by Airflow
SMALL_MODEL = {  # tests/tiny_lake.py's small_model_overrides, one epoch
    "embedding_dim": 8,
    "k1": 8,
    "k2": 3,
    "memory_dim": 8,
    "item_k1": 6,
    "item_k2": 2,
    "expert_hidden": 16,
    "tower_hidden": 8,
    "query_tower_hidden": 16,
    "recent_queries": 256,
    "dead_centre_window": 20,
    "tasks": ["click", "long_view", "like"],
}


def world_conf(state: Path) -> dict:
    """Every path under `state`, a tiny model, a small local Spark (as nightly_world's)."""
    return {
        "lakehouse": {"root": str(state / "lake")},
        "mlflow": {
            "tracking_uri": f"sqlite:///{state / 'mlflow.db'}",
            "artifact_root": str(state / "art"),
        },
        "ingest": {"on_missing_drop": "fail"},
        "train": {
            "checkpoint_dir": str(state / "ck"),
            "petastorm_cache_dir": str(state / "ps"),
            "train_days": TRAIN_DAYS,
            "epochs": 1,
            "batch_size": 128,
            "early_stopping_patience": 5,
            "use_gpu": False,
        },
        "evaluate": {"truth_dir": str(state / "raw" / "truth")},
        "model": SMALL_MODEL,
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": 2,
            "log_level": "ERROR",
            "driver_memory": "1g",
            "extra": TINY_DATA_SPARK,
        },
    }


@dataclass
class DagRunResult:
    rc: int
    output: str  # `airflow dags test`'s output: the scheduler loop and every task's log
    states: dict[str, dict]  # task_id -> states-for-dag-run row

    def task_log(self, task_id: str) -> str:
        """The lines the task logged, between dag.test's start and end markers."""
        start = self.output.index(f"[DAG TEST] starting task_id={task_id} ")
        return self.output[start : self.output.index(f"[DAG TEST] end task task_id={task_id} ")]


@dataclass
class AirflowWorld:
    state: Path
    raw: Path
    conf: Path
    env: dict[str, str]

    def airflow(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(AIRFLOW), *argv],
            env=self.env,
            cwd=self.state,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_night(self, name: str) -> DagRunResult:
        test = self.airflow("dags", "test", "duia_nightly", str(NIGHT), timeout=1500)
        output = test.stdout + test.stderr
        (self.state / f"{name}.log").write_text(output)
        runs = self._json(self.airflow("dags", "list-runs", "duia_nightly", "-o", "json"))
        (run,) = [r for r in runs if r["logical_date"].startswith(str(NIGHT))]
        rows = self._json(
            self.airflow("tasks", "states-for-dag-run", "duia_nightly", run["run_id"], "-o", "json")
        )
        return DagRunResult(test.returncode, output, {r["task_id"]: r for r in rows})

    @staticmethod
    def _json(done: subprocess.CompletedProcess):
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads([x for x in done.stdout.splitlines() if x.startswith("[")][-1])


def run_main_venv(argv: list[str], timeout: float = 900) -> str:
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=_clean_env()
    )
    assert done.returncode == 0, f"{' '.join(argv[:2])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This environment without the Airflow, duia and PySpark settings of this venv's tests;
    Spark's Python workers run the main venv's interpreter."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DUIA_", "PYSPARK_"))
    }
    return {**env, "PYSPARK_PYTHON": str(MAIN_VENV / "bin" / "python")}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> AirflowWorld:
    python = MAIN_VENV / "bin" / "python"
    submit_conf = REPO / ".duia" / "spark-submit.conf"
    for needed in (python, submit_conf, AIRFLOW):
        if not needed.exists():
            pytest.fail(f"{needed} missing: run `make setup airflow-setup`", pytrace=False)
    state = tmp_path_factory.mktemp("airflow_world")
    raw = state / "raw"
    conf = state / "duia.yaml"
    conf.write_text(json.dumps(world_conf(state), indent=1))  # JSON is YAML
    flags = ["--conf", str(conf)]
    last = str(NIGHT - dt.timedelta(days=1))
    # One process (one Spark driver) builds the world: generate, ingest, backfill.
    build = f"""
import sys
from duia_spark.cli import main
flags = {flags!r}
for argv in (
    ["generate", "--out", {str(raw)!r}, "--users", "150", "--items", "60",
     "--days", "{TRAIN_DAYS + 1}", "--seed", "5"],
    ["ingest", "--path", {str(raw)!r}, "--date", "{START}", "--end-date", "{last}"],
    ["backfill", "--date", "{START}", "--end-date", "{last}"],
):
    if main([*argv, *flags]) != 0:
        sys.exit(f"duia {{argv[0]}} failed")
"""
    run_main_venv([str(python), "-c", build])
    # DUIA_STATE: where the workers find spark-submit.conf (Delta's jars) from `make setup`.
    (state / "duia").mkdir()
    shutil.copy(submit_conf, state / "duia" / "spark-submit.conf")
    with (state / "duia" / "spark-submit.conf").open("a") as f:
        # Each task's driver JVM lives under a minute on a tiny world: the quick JIT tier
        # and the serial collector start it faster (a task ~20 % quicker here).
        f.write("\nspark.driver.extraJavaOptions -XX:TieredStopAtLevel=1 -XX:+UseSerialGC\n")
    env = {
        **_clean_env(),
        "AIRFLOW_HOME": str(state / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "jobs" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "DUIA_HOME": str(REPO),
        "DUIA_VENV": str(MAIN_VENV),
        "DUIA_STATE": str(state / "duia"),
        "AIRFLOW_VAR_DUIA_RAW": str(raw),
        "AIRFLOW_VAR_DUIA_SOURCE": "synthetic",
        "AIRFLOW_VAR_DUIA_CONF": str(conf),
        "DUIA_RETRIES": "0",  # a failed task fails the run at once
    }
    w = AirflowWorld(state, raw, conf, env)
    migrate = w.airflow("db", "migrate", timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return w


@pytest.fixture(scope="module")
def night_without_its_drop(world) -> DagRunResult:
    drop = world.raw / "log" / str(NIGHT)
    late = world.state / "late_drop"
    drop.rename(late)  # the day's logs have not landed yet
    try:
        return world.run_night("night_without_its_drop")
    finally:
        late.rename(drop)  # ... and now they have


@pytest.fixture(scope="module")
def night_rerun(world, night_without_its_drop) -> DagRunResult:
    return world.run_night("night_rerun")


@pytest.mark.slow
def test_a_night_whose_drop_is_missing_fails_at_ingest_with_the_reason_and_runs_nothing_after(
    world, night_without_its_drop
):
    night = night_without_its_drop
    assert night.rc != 0, night.output[-3000:]
    assert night.states["ingest"]["state"] == "failed"
    reason = (
        f"duia ingest: failed: RawInputError: [ingest] no drop under {world.raw}/log/ "
        f"for {NIGHT}..{NIGHT}"
    )
    assert reason in night.task_log("ingest"), night.task_log("ingest")[-3000:]
    for stage in STAGES[1:]:
        row = night.states[stage]
        assert row["state"] == "upstream_failed", row  # marked, never started
        assert f"starting task_id={stage} " not in night.output


@pytest.mark.slow
def test_once_the_drop_lands_a_rerun_succeeds_task_by_task_and_scores_the_night(world, night_rerun):
    assert night_rerun.rc == 0, night_rerun.output[-5000:]
    assert {t: r["state"] for t, r in night_rerun.states.items()} == dict.fromkeys(
        STAGES, "success"
    )
    # Read back through the main venv: the Airflow venv has no Spark, Delta or MLflow.
    check = f"""
import json
from mlflow import MlflowClient
from pyspark.sql import functions as F
from duia_spark.config import load_config
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session

cfg = load_config({str(world.conf)!r})
spark = build_spark_session(cfg, "airflow-test-check")
scores = Lakehouse(spark, cfg).read("scores").where(F.col("score_date") == "{NIGHT}").count()
champion = MlflowClient(cfg.mlflow.tracking_uri).get_model_version_by_alias(
    cfg.mlflow.registered_model, cfg.mlflow.champion_alias
)
print(json.dumps({{"scores": scores, "champion_date": champion.tags["data_date"]}}))
"""
    out = run_main_venv([str(MAIN_VENV / "bin" / "python"), "-c", check], timeout=300)
    found = json.loads(out.strip().splitlines()[-1])
    assert found["scores"] > 0, found
    assert found["champion_date"] == str(NIGHT), found
