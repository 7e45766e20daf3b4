"""A Spark standalone cluster on 127.0.0.1 for the bench scripts: a master and workers
started with the venv's `spark-class`, each logging to a file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

SPARK_CLASS = Path(sys.executable).parent / "spark-class"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start_master(env: dict, log: Path) -> tuple[subprocess.Popen, str, int]:
    """-> (process, spark://127.0.0.1:<port>, web UI port), once the master listens."""
    port, ui = free_port(), free_port()
    proc = subprocess.Popen(
        [str(SPARK_CLASS), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(ui)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_port(port)
    return proc, f"spark://127.0.0.1:{port}", ui


def start_worker(master: str, cores: int, memory: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", master, "--host",
         "127.0.0.1", "--cores", str(cores), "--memory", memory,
         "--webui-port", str(free_port())],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
