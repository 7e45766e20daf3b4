"""Spark settings for the tests' tiny tables (a few hundred rows on a 2-core machine)."""

from __future__ import annotations

import json

TINY_DATA_SPARK = {
    "spark.ui.enabled": "false",
    "spark.sql.adaptive.enabled": "false",
    "spark.default.parallelism": "2",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    # On tables this small, compiling Java for every plan costs more than the plan's run:
    # Spark evaluates the same expressions interpreted (the suite runs about a fifth faster).
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


def tiny_spark_overrides() -> list[str]:
    """Config overrides for a small local Spark running these settings."""
    return [
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "spark.log_level=ERROR",
        f"spark.extra={json.dumps(TINY_DATA_SPARK)}",  # JSON is YAML
    ]
