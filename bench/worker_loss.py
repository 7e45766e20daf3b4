"""A worker lost mid-stage: kill an executor JVM while `duia samples` runs on a local
standalone cluster, and check the stage still completes and writes what a clean run writes.

Generates a tiny world (300 users, 100 items, 4 days), ingests it and backfills the
features in local mode, copies the lakehouse, then starts a master and two workers
(1 core each) with `spark-class` and runs `duia samples --date <last day>` against them.
While the stage has running tasks (polled from the driver's REST API) it kills -9 the
executor that runs them; Spark retries the lost tasks on the other executor (or on the
one the worker starts in its place). The clean copy runs the same stage in local mode;
both partitions are compared by row count and an order-independent hash (sum of
xxhash64 over every column). Prints a table and writes bench/results/worker_loss.md.

    python bench/worker_loss.py [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from provenance import write_result  # noqa: E402  (bench/ is the script's folder)
from pyspark.sql import functions as F
from pyspark.sql import types as T

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from standalone_cluster import free_port, start_master, start_worker  # noqa: E402

from duia_spark.config import load_config  # noqa: E402
from duia_spark.session import build_spark_session  # noqa: E402

BIN = Path(sys.executable).parent
FIRST_DAY = dt.date(2026, 1, 1)
DAYS = 4
LAST_DAY = FIRST_DAY + dt.timedelta(days=DAYS - 1)
KILL_AFTER_S = 3.0  # at least this long into the driver's life, and only with tasks running


def _get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (localhost)
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _duia(args: list[str], log: Path, env: dict) -> int:
    with log.open("w") as f:
        return subprocess.run(
            [str(BIN / "duia"), *args],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode


def _executor_pid(app_id: str, executor_id: str) -> int | None:
    out = subprocess.run(
        ["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True
    ).stdout
    for pid in out.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode() for a in cmd]
        if (
            app_id in args
            and "--executor-id" in args
            and args[args.index("--executor-id") + 1] == executor_id
        ):
            return int(pid)
    return None


def run_with_kill(cmd: list[str], log: Path, env: dict, ui_port: int) -> dict:
    """Run the stage, kill -9 a busy executor once tasks run; return what happened."""
    api = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    t0 = time.time()
    info: dict = {"killed": None}
    last_stages = None
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        app_id = None
        while proc.poll() is None:
            time.sleep(0.3)
            if app_id is None:
                apps = _get_json(api)
                app_id = apps[0]["id"] if apps else None
                continue
            stages = _get_json(f"{api}/{app_id}/stages")
            if stages is not None:
                last_stages = stages
            if info["killed"] is not None or time.time() - t0 < KILL_AFTER_S:
                continue
            busy = [
                e
                for e in _get_json(f"{api}/{app_id}/executors") or []
                if e["id"] != "driver" and e.get("activeTasks", 0) > 0
            ]
            if not busy:
                continue
            victim = busy[0]
            pid = _executor_pid(app_id, victim["id"])
            if pid is None:
                continue
            active = [s for s in stages or [] if s.get("status") == "ACTIVE"]
            os.kill(pid, 9)
            info["killed"] = {
                "pid": pid,
                "executor": victim["id"],
                "at_s": time.time() - t0,
                "running_tasks": victim["activeTasks"],
                "spark_stages": [f"{s['stageId']}: {s['name'][:60]}" for s in active],
            }
        info["rc"] = proc.returncode
    info["wall_s"] = time.time() - t0
    info["app_id"] = app_id
    stages = last_stages or []
    info["failed_tasks"] = sum(s.get("numFailedTasks", 0) for s in stages)
    info["retried_stage_attempts"] = sum(1 for s in stages if s.get("attemptId", 0) > 0)
    text = log.read_text(errors="replace")
    info["lost_lines"] = [
        ln
        for ln in text.splitlines()
        if re.search(r"Lost executor|ExecutorLost|Removed executor|lost worker", ln, re.I)
    ][:6]
    return info


def partition_fingerprint(spark, lake: Path) -> tuple[int, int]:
    df = spark.read.format("delta").load(str(lake / "gold" / "samples"))
    df = df.where(F.col("sample_date") == F.lit(LAST_DAY))
    cols = [
        F.to_json(F.col(f.name)) if isinstance(f.dataType, T.MapType) else F.col(f.name)
        for f in df.schema.fields
    ]
    r = df.agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("h")
    ).first()
    return int(r["n"]), int(r["h"] or 0)


def main() -> int:
    # No options: --help describes the bench, anything else is refused.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="duia-worker-loss-"))
    raw, lake, clean = tmp / "raw", tmp / "lake", tmp / "lake_clean"
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_WORKER_DIR": str(tmp / "work"),
        "SPARK_LOG_DIR": str(tmp / "logs"),
    }
    common = [
        "--set", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        "--set", "spark.shuffle_partitions=4",
        "--set", "spark.driver_memory=1g",
    ]  # fmt: skip
    local = ["--master", "local[2]", *common]
    d1, d3 = str(FIRST_DAY), str(LAST_DAY - dt.timedelta(days=1))
    procs: list[subprocess.Popen] = []
    try:
        setup = [
            ["generate", "--out", str(raw), "--users", "300", "--items", "100",
             "--days", str(DAYS), "--seed", "1"],
            ["ingest", "--source", "synthetic", "--path", str(raw), "--lakehouse", str(lake), *local],
            ["backfill", "--date", d1, "--end-date", d3, "--lakehouse", str(lake), *local],
            ["backfill", "--date", str(LAST_DAY), "--end-date", str(LAST_DAY),
             "--stages", "segment,sequences,item-stats", "--lakehouse", str(lake), *local],
        ]  # fmt: skip
        for i, args in enumerate(setup):
            rc = _duia(args, tmp / f"setup{i}.log", env)
            print(f"[worker-loss] set-up: duia {args[0]} → exit {rc}", flush=True)
            if rc != 0:
                print((tmp / f"setup{i}.log").read_text()[-3000:])
                return rc
        shutil.copytree(lake, clean)

        master_proc, master, ui = start_master(env, tmp / "master.log")
        procs.append(master_proc)
        for w in range(2):
            procs.append(start_worker(master, 1, "1g", env, tmp / f"worker{w}.log"))
        t_reg = time.time()
        while time.time() - t_reg < 60:
            state = _get_json(f"http://127.0.0.1:{ui}/json") or {}
            if len(state.get("workers", [])) >= 2:
                break
            time.sleep(1)
        print(f"[worker-loss] {len(state.get('workers', []))} workers registered", flush=True)

        app_ui = free_port()
        extra = (
            "spark.extra={spark.executor.memory: 768m, spark.executor.cores: '1', "
            f"spark.cores.max: '2', spark.ui.port: '{app_ui}'}}"
        )
        cmd = [str(BIN / "duia"), "samples", "--date", str(LAST_DAY), "--lakehouse", str(lake),
               "--master", master, *common, "--set", extra]  # fmt: skip
        info = run_with_kill(cmd, tmp / "cluster_samples.log", env, app_ui)
        print(f"[worker-loss] cluster run: {info}", flush=True)
        after = _get_json(f"http://127.0.0.1:{ui}/json") or {}

        t0 = time.time()
        rc_clean = _duia(
            ["samples", "--date", str(LAST_DAY), "--lakehouse", str(clean), *local],
            tmp / "clean_samples.log",
            env,
        )
        clean_wall = time.time() - t0

        cfg = load_config(
            overrides=["spark.master=local[2]", "spark.shuffle_partitions=4"]
        )  # fmt: skip
        spark = build_spark_session(cfg, "duia-worker-loss-compare")
        got, want = partition_fingerprint(spark, lake), partition_fingerprint(spark, clean)
        spark.stop()
        equal = got == want and got[0] > 0

        k = info["killed"]
        what = (
            f"executor {k['executor']} (pid {k['pid']}), {k['at_s']:.1f} s after launch, "
            f"{k['running_tasks']} task(s) running in Spark stage(s) "
            + "; ".join(k["spark_stages"])
            if k
            else "nothing: the stage ended before an executor had running tasks"
        )
        retried = info["failed_tasks"] > 0 or info["retried_stage_attempts"] > 0
        ended = [
            a.get("name") for a in after.get("completedapps", []) + after.get("activeapps", [])
        ]
        table = (
            "| run | master | exit | wall s | rows | xxhash64 sum | equal to clean |\n"
            "|---|---|---:|---:|---:|---:|---|\n"
            f"| samples {LAST_DAY}, executor killed | standalone, 2 workers × 1 core | "
            f"{info['rc']} | {info['wall_s']:.0f} | {got[0]} | {got[1]} | "
            f"{'yes' if equal else 'NO'} |\n"
            f"| samples {LAST_DAY}, clean | local[2] | {rc_clean} | {clean_wall:.0f} | "
            f"{want[0]} | {want[1]} | — |\n"
        )
        notes = (
            f"\nKilled (kill -9): {what}.\n\n"
            f"Tasks the driver recorded as failed: {info['failed_tasks']}; stage attempts "
            f"re-submitted: {info['retried_stage_attempts']} — "
            + (
                "the lost tasks were retried and the stage completed."
                if retried
                else "no failed task was recorded, so no retry is claimed."
            )
            + f"\n\nApplications the master saw: {', '.join(map(str, ended)) or '—'}.\n"
        )
        if info["lost_lines"]:
            notes += "\nDriver log:\n\n```\n" + "\n".join(info["lost_lines"]) + "\n```\n"
        notes += (
            "\nWorld: `duia generate --users 300 --items 100 --days 4 --seed 1`, ingested and "
            f"backfilled {d1}..{d3} (and segment / sequences / item-stats of {LAST_DAY}) in "
            "local mode, the lakehouse copied, then `duia samples` on each copy.\n"
            f"\nCommand: `python bench/worker_loss.py`, {dt.date.today()}.\n"
        )
        print(table + notes)
        out = ROOT / "bench" / "results" / "worker_loss.md"
        write_result(out, "# A worker's executor lost mid-stage\n\n" + table + notes)
        return 0 if info["rc"] == 0 and rc_clean == 0 and equal else 1
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if "--keep" not in sys.argv:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"[worker-loss] kept {tmp}")


if __name__ == "__main__":
    sys.exit(main())
