"""The Airflow DAG keeps literal copies of the stage order and the baseline variants
(it must not import duia_spark); these tests keep the copies equal to the originals.
Read with `ast`, so the main suite needs no Airflow."""

from __future__ import annotations

import ast
from pathlib import Path

from duia_spark.config import load_config
from duia_spark.pipeline import NIGHTLY_STAGES

DAG_FILE = Path(__file__).resolve().parents[2] / "jobs" / "airflow" / "duia_nightly_dag.py"


def _dag_module() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def _literal(name: str):
    for node in _dag_module().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{DAG_FILE} assigns no literal {name}")


def test_dag_stage_order_equals_the_nightly_pipeline_order():
    assert tuple(_literal("NIGHTLY_STAGES")) == NIGHTLY_STAGES


def test_dag_baselines_are_the_default_configs_baselines_minus_the_main_variant():
    cfg = load_config()
    expected = [v for v in cfg.evaluate.baselines if v != cfg.model.variant]
    assert _literal("BASELINE_VARIANTS") == expected


def test_dag_file_imports_only_airflow_and_the_standard_library():
    import sys

    for node in ast.walk(_dag_module()):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        for root in roots:
            assert root == "airflow" or root in sys.stdlib_module_names or root == "__future__", (
                f"{DAG_FILE.name} imports {root}: the Airflow scheduler has no Spark stack"
            )


def test_dag_sources_are_the_layouts_ingest_accepts():
    from duia_spark.stages.ingest import SOURCES

    assert tuple(_literal("SOURCES")) == SOURCES
