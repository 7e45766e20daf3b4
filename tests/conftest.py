"""Shared fixtures: one Spark session for the whole run, a fresh lakehouse per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tiny_spark import tiny_spark_overrides

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

collect_ignore = ["airflow"]  # run by `make test-airflow` in the Airflow venv


@pytest.fixture(scope="session")
def base_cfg(tmp_path_factory):
    from duia_spark.config import load_config

    root = tmp_path_factory.mktemp("lakehouse")
    return load_config(
        overrides=[
            f"lakehouse.root={root}",
            *tiny_spark_overrides(),
            "spark.driver_memory=2g",
        ]
    )


@pytest.fixture(scope="session")
def spark(base_cfg):
    from duia_spark.session import build_spark_session

    session = build_spark_session(base_cfg, "duia-tests")
    yield session
    session.stop()


@pytest.fixture
def cfg(base_cfg, tmp_path: Path):
    """Config whose lakehouse is a fresh folder for this test."""
    import dataclasses

    lake = dataclasses.replace(base_cfg.lakehouse, root=str(tmp_path / "lakehouse"))
    return dataclasses.replace(base_cfg, lakehouse=lake)


@pytest.fixture
def lake(spark, cfg):
    from duia_spark.lakehouse import Lakehouse

    return Lakehouse(spark, cfg)
