"""The one place that builds a SparkSession: Delta configured, quiet, any master."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from duia_spark import quiet
from duia_spark.config import Config, shipped_conf_dir


def log4j_conf() -> Path | None:
    """The shipped log4j2 settings as a file the JVM can read: in the checkout or an
    installed wheel; None from a zipped wheel (Spark's own logging settings then apply)."""
    conf = shipped_conf_dir() / "log4j2.properties"
    return conf if isinstance(conf, Path) and conf.is_file() else None


DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def delta_maven_coordinates() -> list[str]:
    """Maven coordinates of the Delta jars matching the installed delta-spark wheel."""
    from importlib.metadata import version

    from pyspark import __version__ as spark_version

    scala = "2.13" if spark_version.startswith("4") else "2.12"
    return [f"io.delta:delta-spark_{scala}:{version('delta-spark')}"]


def local_jars_dir(cfg: Config) -> Path:
    """Where `make setup` copies the resolved Delta jars so later runs need no network."""
    return Path(cfg.resolve_path(cfg.spark.jars_cache)) / "jars"


def local_delta_jars(cfg: Config) -> list[str]:
    return sorted(glob.glob(str(local_jars_dir(cfg) / "*.jar")))


def visible_gpus() -> int:
    """How many NVIDIA GPUs this machine shows (`nvidia-smi -L`); 0 without the tool."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def local_gpu_resources(cfg: Config, gpus: int | None = None) -> dict[str, str]:
    """Spark settings that declare this machine's GPUs to a local driver.

    TorchDistributor in local mode with GPUs refuses to start unless the driver declares
    them (`spark.driver.resource.gpu.*`). With `train.use_gpu` true or auto, a local
    master and GPUs present, the driver gets their count and a discovery script written
    under the state folder; settings given in `spark.extra` win; a cluster declares its
    own resources."""
    use = cfg.train.use_gpu
    if use is False or str(use).lower() == "false" or not cfg.spark.master.startswith("local"):
        return {}
    if "spark.driver.resource.gpu.amount" in cfg.spark.extra:
        return {}
    n = visible_gpus() if gpus is None else gpus
    if n == 0:
        return {}
    script = Path(cfg.resolve_path(cfg.state_dir)) / "gpu_discovery.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    addresses = ", ".join(f'"{i}"' for i in range(n))
    script.write_text(f'#!/bin/sh\necho \'{{"name": "gpu", "addresses": [{addresses}]}}\'\n')
    script.chmod(0o755)
    return {
        "spark.driver.resource.gpu.amount": str(n),
        "spark.driver.resource.gpu.discoveryScript": str(script),
    }


def build_spark_session(cfg: Config, app_name: str | None = None) -> SparkSession:
    """Return the active session, or build one for `cfg.spark` with Delta Lake enabled.

    Delta's jars come from the project's cache (filled once by `make setup`); when the
    cache is empty they are resolved from Maven Central through `spark.jars.packages`.
    Other libraries' known notices are filtered here and in the workers (quiet.py).
    """
    quiet.quiet_logs()
    # Python workers must run this interpreter, or pandas UDFs miss the venv's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    s = cfg.spark
    builder = (
        SparkSession.builder.master(s.master)
        .appName(app_name or s.app_name)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(s.shuffle_partitions))
        # Delta replays its log with 50 tasks by default: on a small machine that fixed
        # cost dominates every read of a small table, so it follows shuffle_partitions.
        .config("spark.databricks.delta.snapshotPartitions", str(s.shuffle_partitions))
        .config("spark.driver.memory", s.driver_memory)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.debug.maxToStringFields", "200")
        .config("spark.sql.sources.partitionOverwriteMode", "static")
        # A partitioned write sorts each task's rows by the partition columns first unless
        # it may keep a few files open at once. Our writes hold one date (a few when
        # backfilling), so the sort of wide rows only spilled: gold.samples at 64x
        # spilled 1.56 GB to memory and 338 MB to disk with it, 139 MB / 54 MB without,
        # in the same time. Past 4 dates in one task the writer sorts the rest.
        .config("spark.sql.maxConcurrentOutputFileWriters", "4")
        # The JVM never JIT-compiles a method of more than 8,000 bytes of bytecode; Spark
        # only gives up whole-stage code generation past 65,535. A wide projection in
        # between (gold.samples' assembly: about 50 columns of arrays and casts) ran
        # interpreted: at 64x the assembly took 38-44 s, 16-20 s with this limit (the stage
        # then runs operator by operator, each compiled; bench/codegen_limit.py).
        # spark.extra can raise it again.
        .config("spark.sql.codegen.hugeMethodLimit", "8000")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    log4j = log4j_conf()
    if log4j is not None:
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{log4j}"
        )
    jars = local_delta_jars(cfg)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        ivy = Path(cfg.resolve_path(s.jars_cache))
        builder = builder.config("spark.jars.ivy", str(ivy)).config(
            "spark.jars.packages", ",".join(delta_maven_coordinates())
        )
    for key, value in {**quiet.spark_settings(), **local_gpu_resources(cfg), **s.extra}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(s.log_level)
    return spark
