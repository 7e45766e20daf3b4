"""The nightly DAG loads through Airflow's own DagBag and chains the stages in order.

Runs in the Airflow venv (`make test-airflow`), not in the main suite: the main venv has
no Airflow, and the Airflow venv has no Spark stack (the DAG file must not need it).
"""

from __future__ import annotations

import os
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
    os.environ["AIRFLOW_VAR_DUIA_RETRIES"] = "4"
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
    assert all(t.retries == 4 for t in dag.tasks)  # from the Airflow Variable


def _render(dag, task_id: str, **params) -> str:
    task = dag.get_task(task_id)

    class Variables:
        @staticmethod
        def get(key, default=None):
            return default

    context = {
        "ds": "2026-01-05",
        "params": {"raw": "", "source": "", "conf": "", **params},
        "var": {"value": Variables()},
    }
    return task.render_template(task.bash_command, context, dag.get_template_env())


def test_each_task_spark_submits_its_job_for_the_runs_date(dag):
    submit = "/srv/duia/.venv/bin/spark-submit --properties-file /srv/duia/.duia/spark-submit.conf"
    assert _render(dag, "ingest") == (
        f"{submit} jobs/ingest.py --date 2026-01-05 --source synthetic --path /data/raw"
    )
    assert _render(dag, "item-stats") == f"{submit} jobs/item_stats.py --date 2026-01-05"
    assert _render(dag, "train-baselines") == (
        f"{submit} jobs/train.py --date 2026-01-05 --variant ple --no-register --cold-start"
    )
    assert _render(dag, "score", conf="/etc/duia.yaml") == (
        f"{submit} jobs/score.py --date 2026-01-05 --conf /etc/duia.yaml"
    )
    assert all(t.cwd == "/srv/duia" for t in dag.tasks)
