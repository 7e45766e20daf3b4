"""The nightly DAG loads through Airflow's own DagBag and chains the stages in order.

Runs in the Airflow venv (`make test-airflow`), not in the main suite: the main venv has
no Airflow, and the Airflow venv has no Spark stack (the DAG file must not need it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DAG_FOLDER = Path(__file__).resolve().parents[2] / "jobs" / "airflow"
STAGES = [
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


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    # Airflow reads its home and config when first imported: set them before that.
    os.environ["AIRFLOW_HOME"] = str(home)
    # Airflow 3.3's DagBag has no include_examples argument; this setting replaces it.
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    os.environ["DUIA_HOME"] = "/srv/duia"
    for derived in ("DUIA_VENV", "DUIA_STATE"):  # default to folders under DUIA_HOME
        os.environ.pop(derived, None)
    os.environ["DUIA_RETRIES"] = "4"
    from airflow.models import DagBag

    return DagBag(dag_folder=str(DAG_FOLDER))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["duia_nightly"]  # get_dag() would ask the metadata DB; none is needed


def test_the_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["duia_nightly"]


def test_one_task_per_nightly_stage_each_after_the_previous_stage(dag):
    assert [t.task_id for t in dag.topological_sort()] == STAGES
    for previous, stage in zip(STAGES, STAGES[1:], strict=False):
        assert dag.get_task(stage).upstream_task_ids == {previous}
    assert dag.get_task(STAGES[0]).upstream_task_ids == set()


def test_schedule_is_daily_one_run_at_a_time_without_catchup(dag):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "0 3 * * *" in dag.timetable.summary
    assert all(t.retries == 4 for t in dag.tasks)  # from DUIA_RETRIES, read at parse time


class _Variables:
    """`var.value` of a template context whose Variables hold `values`."""

    def __init__(self, **values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


def _render(dag, task_id: str, variables: dict | None = None, **params) -> tuple[str, dict]:
    """The task's command and its run environment, rendered as a worker renders them."""
    task = dag.get_task(task_id)
    context = {
        "ds": "2026-01-05",
        "params": {"raw": "", "source": "", "conf": "", **params},
        "var": {"value": _Variables(**(variables or {}))},
    }
    env = task.render_template(task.env, context, dag.get_template_env())
    return task.render_template(task.bash_command, context, dag.get_template_env()), env


SUBMIT = "/srv/duia/.venv/bin/spark-submit --properties-file /srv/duia/.duia/spark-submit.conf"
CONF = '${DUIA_CONF:+--conf "$DUIA_CONF"}'


def test_each_task_spark_submits_its_job_with_the_runs_values_quoted_from_the_environment(dag):
    command, env = _render(dag, "ingest")
    assert command == (
        f'{SUBMIT} jobs/ingest.py --date "$DUIA_DATE" --source "$DUIA_SOURCE" '
        f'--path "$DUIA_RAW" {CONF}'
    )
    assert {k: v for k, v in env.items() if k.startswith("DUIA_")} == {
        "DUIA_DATE": "2026-01-05",
        "DUIA_RAW": "/data/raw",
        "DUIA_SOURCE": "synthetic",
        "DUIA_CONF": "",
    }
    assert (
        _render(dag, "item-stats")[0] == f'{SUBMIT} jobs/item_stats.py --date "$DUIA_DATE" {CONF}'
    )
    assert _render(dag, "train-baselines")[0] == (
        f'{SUBMIT} jobs/train.py --date "$DUIA_DATE" --variant ple --no-register {CONF}'
    )
    command, env = _render(dag, "score", conf="/etc/duia.yaml")
    assert command == f'{SUBMIT} jobs/score.py --date "$DUIA_DATE" {CONF}'
    assert env["DUIA_CONF"] == "/etc/duia.yaml"
    assert all(t.cwd == "/srv/duia" for t in dag.tasks)
    assert not any("{{" in t.bash_command for t in dag.tasks)  # nothing templated into bash


def test_a_run_param_is_preferred_to_the_variable_which_is_preferred_to_the_default(dag):
    variables = {"duia_raw": "/var/raw", "duia_source": "kuairand"}
    _, env = _render(dag, "ingest", variables, raw="/data/today")
    assert (env["DUIA_RAW"], env["DUIA_SOURCE"]) == ("/data/today", "kuairand")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("raw", "/data/raw; touch pwned-by-param"),
        ("raw", "/data/$(touch pwned)"),
        ("raw", "relative/raw"),
        ("conf", "/etc/duia.yaml && touch pwned"),
        ("conf", "/etc/duia.yaml\ntouch pwned"),
        ("source", "synthetic; touch pwned"),
        ("source", "csv"),
    ],
)
def test_a_run_param_that_is_not_a_safe_absolute_path_or_a_known_source_is_refused(
    dag, param, value
):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param(param).resolve(value)


def test_good_run_params_are_accepted(dag):
    assert dag.params.get_param("raw").resolve("/data/raw-2026_01/v1.2") == "/data/raw-2026_01/v1.2"
    assert dag.params.get_param("source").resolve("kuairand") == "kuairand"
    assert dag.params.get_param("conf").resolve("") == ""


def test_a_hostile_value_that_reaches_the_command_is_one_inert_argument(dag, tmp_path):
    """A Variable is not schema-checked: its value still reaches spark-submit as one
    argument and runs nothing. The command runs in bash as the worker runs it, with a
    stand-in spark-submit that records its arguments."""
    submit = tmp_path / "spark-submit"
    submit.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    submit.chmod(0o755)
    hostile = f"/data/raw; touch {tmp_path}/pwned; echo $(touch {tmp_path}/pwned2)"
    command, env = _render(
        dag,
        "ingest",
        {"duia_raw": hostile, "duia_conf": f"/c.yaml`touch {tmp_path}/pwned3`"},
    )
    command = command.replace("/srv/duia/.venv/bin/spark-submit", str(submit), 1)
    run_env = {**os.environ, **env, "ARGS_OUT": str(tmp_path / "args")}
    done = subprocess.run(["bash", "-c", command], env=run_env, cwd=tmp_path, timeout=30)
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args", "spark-submit"]
    args = (tmp_path / "args").read_text().splitlines()
    assert args[args.index("--path") + 1] == hostile
    assert args[args.index("--conf") + 1] == f"/c.yaml`touch {tmp_path}/pwned3`"
