"""Train on a real Spark standalone cluster on localhost: TorchDistributor with
`local_mode=False` runs the DDP ranks as barrier tasks on the executors.

Starts a master and one worker (2 cores) with `spark-class`, builds the tiny sample
lakehouse the tests use, runs `duia train --master spark://127.0.0.1:<port>` with
`train.local_mode=false train.num_processes=2`, checks a version was registered, and stops
the cluster. Prints a one-row table and writes bench/results/standalone_train.md.

    python bench/standalone_train.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from standalone_cluster import start_master, start_worker  # noqa: E402
from tiny_lake import FIRST_DAY, N_DAYS, small_model_overrides, write_tiny_lakehouse  # noqa: E402

from duia_spark.cli import main as duia  # noqa: E402
from duia_spark.config import load_config  # noqa: E402
from duia_spark.lakehouse import Lakehouse  # noqa: E402
from duia_spark.session import build_spark_session, local_delta_jars  # noqa: E402


def main() -> int:
    # No options: --help describes the bench, anything else is refused.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="duia-standalone-"))
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_WORKER_DIR": str(tmp / "work"),
        "SPARK_LOG_DIR": str(tmp / "logs"),
    }
    procs = []
    try:
        master_proc, master, _ = start_master(env, tmp / "master.log")
        procs.append(master_proc)
        procs.append(start_worker(master, 2, "6g", env, tmp / "worker.log"))
        time.sleep(8)  # the worker registers with the master
        sets = [
            f"lakehouse.root={tmp / 'lake'}",
            f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            f"mlflow.artifact_root={tmp / 'art'}",
            f"train.checkpoint_dir={tmp / 'ck'}",
            f"train.petastorm_cache_dir={tmp / 'ps'}",
            f"spark.master={master}",
            "spark.driver_memory=2g",
            "spark.extra={spark.executor.memory: 4g, spark.executor.cores: '2', spark.task.cpus: '1'}",
            *small_model_overrides(),
            "train.local_mode=false",
            "train.num_processes=2",
            "train.train_days=3",
            "train.epochs=2",
        ]
        cfg = load_config(overrides=sets)
        assert local_delta_jars(cfg), "run `make setup` first (Delta jars)"
        spark = build_spark_session(cfg, "duia-standalone-setup")
        write_tiny_lakehouse(spark, Lakehouse(spark, cfg), cfg)
        t0 = time.time()
        day = FIRST_DAY + dt.timedelta(days=N_DAYS - 1)
        rc = duia(["train", "--date", str(day), *[x for s in sets for x in ("--set", s)]])
        wall = time.time() - t0
        spark.stop()
        status = "registered" if rc == 0 else f"failed (exit {rc}; logs in {tmp})"
        table = (
            "| cluster | ranks | mode | wall s | result |\n|---|---:|---|---:|---|\n"
            f"| standalone, 1 worker × 2 cores (localhost) | 2 | barrier tasks on executors | {wall:.0f} | {status} |\n"
            f"\nModel: {cfg.model.variant}, enhancement_fusion {cfg.model.enhancement_fusion} "
            "(conf/default.yaml with the tests' small sizes).\n"
            f"\nCommand: `python bench/standalone_train.py`, {dt.date.today()}.\n"
        )
        print(table)
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        write_result(
            ROOT / "bench" / "results" / "standalone_train.md",
            "# Training on a standalone cluster\n\n" + table,
        )
        return rc
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        if "--keep" not in sys.argv:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
