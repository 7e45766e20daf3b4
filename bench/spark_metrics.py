"""What one step of a benchmark cost Spark: wall time, Spark's own task metrics summed
over the jobs the step ran, and the driver's peak memory during the step.

The task metrics are the records the Spark UI's REST API serves
(`/api/v1/applications/<id>/jobs` and `/stages`: `v1.JobData`, `v1.StageData`), read
straight from the driver's status store through the py4j gateway and serialised by
the same Jackson mapper, so they need neither the UI (`spark.ui.enabled=false` works)
nor an HTTP port. A step's jobs are every job submitted between its two marks: the
benchmarks run one step at a time, and Delta's own jobs (log replay, checkpoints,
statistics) count towards the step that caused them. The step's name is also set as
the Spark job group, so the UI shows which step ran which job.

Peak memory is VmHWM (peak resident set) of the Python driver and of the driver JVM,
reset at the start of each step (`/proc/<pid>/clear_refs`), so it is the step's own
peak. In local mode the JVM also runs the executors' tasks.

    recorder = SparkMetricsRecorder(spark)
    metrics, value = recorder.measure("segment", run_segment)
    ceiling = recorder.measure("segment ceiling", lambda: ceiling_pass(inputs))[0]
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

T = TypeVar("T")


@dataclass
class StepMetrics:
    step: str
    wall_s: float
    jobs: int
    spark_stages: int  # Spark stage attempts that ran (skipped ones not counted)
    tasks: int
    input_records: int  # rows read from files/tables by the tasks
    input_bytes: int
    output_records: int
    output_bytes: int
    shuffle_read_bytes: int
    shuffle_write_bytes: int
    memory_spilled_bytes: int
    disk_spilled_bytes: int
    executor_run_s: float  # summed over tasks
    python_peak_mb: float
    jvm_peak_mb: float

    def as_dict(self) -> dict:
        return asdict(self)


# StageData fields summed into StepMetrics.
_STAGE_SUMS = {
    "numCompleteTasks": "tasks",
    "inputRecords": "input_records",
    "inputBytes": "input_bytes",
    "outputRecords": "output_records",
    "outputBytes": "output_bytes",
    "shuffleReadBytes": "shuffle_read_bytes",
    "shuffleWriteBytes": "shuffle_write_bytes",
    "memoryBytesSpilled": "memory_spilled_bytes",
    "diskBytesSpilled": "disk_spilled_bytes",
    "executorRunTime": "executor_run_ms",
}


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_vm_hwm(pid: int) -> bool:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class SparkMetricsRecorder:
    """Measures steps run one after another on one SparkSession's driver."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        sc = spark.sparkContext
        self._sc = sc
        self._scala_sc = sc._jsc.sc()
        jvm = sc._jvm
        self._mapper = jvm.com.fasterxml.jackson.databind.ObjectMapper()
        scala_module = getattr(jvm.com.fasterxml.jackson.module.scala, "DefaultScalaModule$")
        self._mapper.registerModule(getattr(scala_module, "MODULE$"))
        self._no_task_statuses = jvm.java.util.ArrayList()
        self._no_quantiles = sc._gateway.new_array(jvm.double, 0)
        self.jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
        # Peaks are per step when VmHWM can be reset, else since the process started.
        self.peaks_per_step = True

    # -------------------------------------------------------------- status store
    def _drain(self) -> None:
        """Wait until the listener bus has delivered every event to the status store."""
        self._scala_sc.listenerBus().waitUntilEmpty(120_000)

    def _jobs(self) -> list[dict]:
        store = self._scala_sc.statusStore()
        return json.loads(self._mapper.writeValueAsString(store.jobsList(None)))

    def _stage_attempts(self, stage_id: int) -> list[dict]:
        store = self._scala_sc.statusStore()
        try:
            seq = store.stageData(
                stage_id, False, self._no_task_statuses, False, self._no_quantiles
            )
        except Exception:  # evicted from the store (spark.ui.retainedStages)
            return []
        return json.loads(self._mapper.writeValueAsString(seq))

    def last_job_id(self) -> int:
        self._drain()
        return max((j["jobId"] for j in self._jobs()), default=-1)

    def metrics_since(self, job_id: int) -> dict:
        """Sums over the Spark stages of every job after `job_id` (waits for them to end)."""
        deadline = time.time() + 120
        while True:
            self._drain()
            jobs = [j for j in self._jobs() if j["jobId"] > job_id]
            if all(j["status"] != "RUNNING" for j in jobs) or time.time() > deadline:
                break
            time.sleep(0.2)
        totals = dict.fromkeys(_STAGE_SUMS.values(), 0)
        stage_ids = sorted({s for j in jobs for s in j.get("stageIds", [])})
        attempts = 0
        for sid in stage_ids:
            for st in self._stage_attempts(sid):
                if st.get("status") == "SKIPPED":
                    continue
                attempts += 1
                for src, dst in _STAGE_SUMS.items():
                    totals[dst] += int(st.get(src) or 0)
        return {"jobs": len(jobs), "spark_stages": attempts, **totals}

    # -------------------------------------------------------------- one step
    def measure(self, step: str, fn: Callable[[], T]) -> tuple[StepMetrics, T]:
        """Run fn() as one step; -> (its metrics, its return value)."""
        before = self.last_job_id()
        pids = (os.getpid(), self.jvm_pid)
        if not all(_reset_vm_hwm(p) for p in pids):
            self.peaks_per_step = False
        sc = self._sc
        previous = (
            sc.getLocalProperty("spark.jobGroup.id"),
            sc.getLocalProperty("spark.job.description"),
        )
        sc.setLocalProperty("spark.jobGroup.id", step)
        sc.setLocalProperty("spark.job.description", step)
        t0 = time.perf_counter()
        try:
            value = fn()
        finally:
            wall = time.perf_counter() - t0
            sc.setLocalProperty("spark.jobGroup.id", previous[0])
            sc.setLocalProperty("spark.job.description", previous[1])
        sums = self.metrics_since(before)
        run_ms = sums.pop("executor_run_ms")
        metrics = StepMetrics(
            step=step,
            wall_s=wall,
            executor_run_s=run_ms / 1000,
            python_peak_mb=_vm_hwm_mb(os.getpid()),
            jvm_peak_mb=_vm_hwm_mb(self.jvm_pid),
            **sums,
        )
        return metrics, value


def _hashable(df: DataFrame) -> list:
    """Every column, maps as JSON (Spark's hash functions refuse map columns)."""
    return [
        F.to_json(F.col(f.name)) if isinstance(f.dataType, MapType) else F.col(f.name)
        for f in df.schema.fields
    ]


def ceiling_pass(inputs: list[tuple[DataFrame, str]]) -> None:
    """The plainest Spark pass over a step's input: read every input column, one groupBy
    on the key, write to the `noop` sink. `inputs`: (frame of the columns read, key).

    Each row is reduced to its key and a hash of all its columns, so every column is
    read and decoded (a count alone would let Parquet skip them); the inputs are
    unioned and grouped by key in one shuffle.
    """
    parts = [
        df.select(F.col(key).cast("string").alias("key"), F.xxhash64(*_hashable(df)).alias("h"))
        for df, key in inputs
    ]
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    (
        union.groupBy("key")
        .agg(F.count(F.lit(1)).alias("rows"), F.max("h").alias("h"))
        .write.format("noop")
        .mode("overwrite")
        .save()
    )
