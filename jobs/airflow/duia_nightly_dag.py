"""Airflow DAG of the nightly pipeline: one task per stage of `duia nightly`, in order.

Each task is the `spark-submit jobs/<stage>.py --date D ...` call of the stage that
`duia nightly` runs in-process (`duia_spark.stages.nightly.run_stage`). Airflow keeps the bookkeeping
(retries, clearing a task re-runs it and everything downstream), so the DAG calls the
stage jobs directly instead of `duia nightly` and its run ledger; every stage is
idempotent for its date, so a retry or a cleared task is safe.

This file imports only Airflow and the standard library: the scheduler's environment
does not carry the project's pinned Spark stack. The stage order is therefore a literal
copy of `duia_spark.pipeline.NIGHTLY_STAGES`; tests/pipeline/test_pipeline_dag_order.py
keeps the two equal.

Environment of the Airflow workers:
  DUIA_HOME    the project checkout, where tasks run (default /opt/duia-spark)
  DUIA_VENV    the project's virtual environment (default $DUIA_HOME/.venv)
  DUIA_STATE   local state holding spark-submit.conf from `make setup` (default $DUIA_HOME/.duia)
  DUIA_RETRIES retries of a failed task (default 2; read from the environment when the
               file is parsed, so parsing makes no metadata-database call)
Airflow Variables (optional; a DAG run's params override them):
  duia_raw     raw drops folder that ingest reads D from (default /data/raw)
  duia_source  raw layout for ingest: synthetic, kuairand, movielens (default synthetic)
  duia_conf    YAML file deep-merged over conf/default.yaml (default: none)

A run's parameters never become shell text. They are typed Params (an absolute path of
safe characters, an enum of sources) that Airflow validates when the run is triggered;
their values, and the Variables', reach the command through the task's environment
(DUIA_RAW, DUIA_SOURCE, DUIA_CONF) and the command quotes them ("$DUIA_RAW"), so a value
such as "/data/raw; rm -rf /" is refused by the Param and, from a Variable, is one
argument that names no folder.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

# Keep equal to duia_spark.pipeline.NIGHTLY_STAGES (a test checks it).
NIGHTLY_STAGES = [
    "ingest",
    "segment",
    "sequences",
    "item-stats",
    "samples",
    "train",
    "train-baselines",
    "evaluate",
    "score",
]
# Variants trained beside the main model: evaluate.baselines of conf/default.yaml
# without the main variant (model.variant); a test checks it.
BASELINE_VARIANTS = ["ple"]

DUIA_HOME = os.environ.get("DUIA_HOME", "/opt/duia-spark")
DUIA_VENV = os.environ.get("DUIA_VENV", os.path.join(DUIA_HOME, ".venv"))
DUIA_STATE = os.environ.get("DUIA_STATE", os.path.join(DUIA_HOME, ".duia"))

# The raw layouts `duia ingest --source` accepts (duia_spark.stages.ingest.SOURCES; a test
# keeps them equal).
SOURCES = ["synthetic", "kuairand", "movielens"]
# An absolute path of letters, digits and . _ - + / only: nothing a shell would read.
SAFE_PATH = r"^/[A-Za-z0-9._+/-]*$"

# Rendered per run into the task's environment (never into the command): a DAG run's
# param, else the Airflow Variable, else the default.
RUN_ENV = {
    "DUIA_DATE": "{{ ds }}",
    "DUIA_RAW": "{{ params.raw or var.value.get('duia_raw', '/data/raw') }}",
    "DUIA_SOURCE": "{{ params.source or var.value.get('duia_source', 'synthetic') }}",
    "DUIA_CONF": "{{ params.conf or var.value.get('duia_conf', '') }}",
}
# The command reads them quoted; --conf only when one is set.
DATE, RAW, SOURCE = '"$DUIA_DATE"', '"$DUIA_RAW"', '"$DUIA_SOURCE"'
CONF_FLAG = '${DUIA_CONF:+--conf "$DUIA_CONF"}'


def stage_jobs(stage: str) -> list[list[str]]:
    """[job, flags after --date] per spark-submit call of a stage, as `run_stage` runs it."""
    if stage == "ingest":
        return [["ingest", "--source", SOURCE, "--path", RAW]]
    if stage == "train-baselines":
        return [["train", "--variant", v, "--no-register"] for v in BASELINE_VARIANTS]
    return [[stage]]


def stage_command(stage: str) -> str:
    """The bash command of a stage's task: its spark-submit call(s), one after the other.

    Fixed words are shell-quoted; the run's values are the quoted environment variables
    above, which bash expands as single arguments and never parses as commands."""
    submit = [
        os.path.join(DUIA_VENV, "bin", "spark-submit"),
        "--properties-file",
        os.path.join(DUIA_STATE, "spark-submit.conf"),
    ]
    run_values = {DATE, RAW, SOURCE}
    calls = []
    for job, *flags in stage_jobs(stage):
        argv = [*submit, f"jobs/{job.replace('-', '_')}.py", "--date", DATE, *flags, CONF_FLAG]
        calls.append(
            " ".join(a if a in run_values or a == CONF_FLAG else shlex.quote(a) for a in argv)
        )
    return " && ".join(calls) or "true"  # no baseline variants: nothing to run


with DAG(
    dag_id="duia_nightly",
    description="duia-spark nightly: ingest → features → train (+ baselines) → evaluate → score",
    # Airflow 3's cron default names a run after the time it starts; the data-interval
    # timetable names it after the day it covers, so {{ ds }} is the finished day D.
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        # From the worker's environment: parsing the file asks no metadata database.
        "retries": int(os.environ.get("DUIA_RETRIES", "2")),
        "retry_delay": dt.timedelta(minutes=10),
        "cwd": DUIA_HOME,
        "env": {"PYSPARK_PYTHON": os.path.join(DUIA_VENV, "bin", "python"), **RUN_ENV},
        "append_env": True,
    },
    params={
        "raw": Param(
            "",
            type="string",
            pattern=f"^$|{SAFE_PATH}",
            description="raw drops folder, an absolute path (empty: Variable duia_raw)",
        ),
        "source": Param(
            "",
            type="string",
            enum=["", *SOURCES],
            description="raw layout (empty: Variable duia_source)",
        ),
        "conf": Param(
            "",
            type="string",
            pattern=f"^$|{SAFE_PATH}",
            description="config YAML, an absolute path (empty: Variable duia_conf)",
        ),
    },
    tags=["duia-spark"],
) as dag:
    previous = None
    for stage in NIGHTLY_STAGES:
        task = BashOperator(task_id=stage, bash_command=stage_command(stage))
        if previous is not None:
            previous >> task
        previous = task
