"""The wheel on a Spark standalone cluster, from a folder outside the checkout: what a
platform team does with `--py-files`.

Builds the wheel, copies it to a `.zip` name (spark-submit puts only `.zip`/`.egg` files
on the executors' path), starts a master and one worker (2 cores) on 127.0.0.1 with
`spark-class`, and from an empty temporary folder runs `generate` and `ingest` through
`spark-submit --master spark://... --py-files duia_spark.zip`, with a three-line driver
script and relative paths (`--out raw`, `--path raw --lakehouse lake`). Checks that the
driver imported duia_spark from the zip, that the tables landed in that folder and that
nothing was written into the checkout. Prints a table and writes
bench/results/standalone_wheel.md.

    python bench/standalone_wheel.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from provenance import write_result  # noqa: E402  (bench/ is the script's folder)
from standalone_cluster import start_master, start_worker  # noqa: E402

from duia_spark.config import load_config  # noqa: E402
from duia_spark.jars import write_spark_submit_properties  # noqa: E402
from duia_spark.session import local_delta_jars  # noqa: E402

BIN = Path(sys.executable).parent
PACKAGING_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md")
DRIVER = """import sys
import duia_spark
from duia_spark.cli import main
print(f"[driver] duia_spark from {duia_spark.__file__}", flush=True)
sys.exit(main(sys.argv[1:]))
"""
SPARK = [
    "spark.log_level=ERROR",
    "spark.shuffle_partitions=2",
    "spark.driver_memory=1g",
    "spark.extra={spark.executor.memory: 2g, spark.executor.cores: '2', spark.ui.enabled: 'false'}",
]


def build_zip(tmp: Path) -> Path:
    """The wheel, built from a copy of the packaging inputs, under a `.zip` name."""
    src = tmp / "src"
    src.mkdir()
    for name in PACKAGING_INPUTS:
        shutil.copy2(ROOT / name, src / name)
    for name in ("conf", "duia_spark"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "wheel"]
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-w", str(tmp), "."], cwd=src,
                   check=True)  # fmt: skip
    (wheel,) = tmp.glob("duia_spark-*.whl")
    return Path(shutil.copy2(wheel, tmp / "duia_spark.zip"))


def submit(work: Path, env: dict, master: str, props: Path, zipped: Path, argv: list[str]):
    """-> (exit code, seconds, output) of one stage through spark-submit."""
    cmd = [str(BIN / "spark-submit"), "--master", master, "--properties-file", str(props),
           "--py-files", str(zipped), "driver.py", *argv,
           *[x for s in SPARK for x in ("--set", s)]]  # fmt: skip
    t0 = time.time()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    return done.returncode, time.time() - t0, done.stdout + done.stderr


def main() -> int:
    # No options: --help describes the bench, anything else is refused.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="duia-wheel-"))
    work = tmp / "work"
    work.mkdir()
    (work / "driver.py").write_text(DRIVER)
    # The Delta jars `make setup` cached: spark-submit starts the driver JVM with them.
    jars = local_delta_jars(load_config())
    assert jars, "run `make setup` first (Delta jars)"
    props = write_spark_submit_properties(load_config(overrides=[f"state_dir={tmp}"]), jars)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DUIA_HOME"},
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONDONTWRITEBYTECODE": "1",
        "SPARK_WORKER_DIR": str(tmp / "worker"),
        "SPARK_LOG_DIR": str(tmp / "logs"),
    }
    checkout_before = sorted(p.name for p in ROOT.iterdir())
    procs = []
    rows = []
    try:
        zipped = build_zip(tmp)
        master_proc, master, _ = start_master(env, tmp / "master.log")
        procs.append(master_proc)
        procs.append(start_worker(master, 2, "3g", env, tmp / "worker.log"))
        time.sleep(8)  # the worker registers with the master
        days = ["--start-date", "2026-01-01", "--days", "2"]
        dates = ["--date", "2026-01-01", "--end-date", "2026-01-02"]
        for argv in (
            ["generate", "--out", "raw", "--users", "200", "--items", "50", *days],
            ["ingest", "--path", "raw", "--lakehouse", "lake", *dates],
        ):
            rc, wall, out = submit(work, env, master, props, zipped, argv)
            (tmp / f"{argv[0]}.log").write_text(out)
            loaded = [ln for ln in out.splitlines() if ln.startswith("[driver] duia_spark from")]
            from_zip = bool(loaded) and ".zip" in loaded[0] and str(ROOT) not in loaded[0]
            rows.append((argv[0], wall, rc == 0 and from_zip, rc))
            if rc != 0 or not from_zip:
                print(out[-4000:])
                break
        landed = (work / "lake" / "bronze" / "events" / "_delta_log").is_dir()
        clean = sorted(p.name for p in ROOT.iterdir()) == checkout_before
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
    ok = len(rows) == 2 and all(r[2] for r in rows) and landed and clean
    table = "| stage | wall s | result |\n|---|---:|---|\n" + "".join(
        f"| {stage} | {wall:.0f} | {'ok' if good else f'failed (exit {rc}; logs in {tmp})'} |\n"
        for stage, wall, good, rc in rows
    )
    table += (
        f"\nStandalone cluster, 1 worker × 2 cores (localhost); `spark-submit --py-files "
        f"duia_spark.zip` (the wheel) from an empty folder outside the checkout; driver "
        f"imported duia_spark from the zip: {all(r[2] for r in rows)}; tables under that "
        f"folder's `lake/`: {landed}; checkout untouched: {clean}.\n"
    )
    print(table)
    out = ROOT / "bench" / "results" / "standalone_wheel.md"
    write_result(out, "# The wheel on a standalone cluster\n\n" + table)
    if "--keep" not in sys.argv and ok:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
