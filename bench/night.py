"""A whole night at scale, every stage: `python bench/night.py --scale 16` (`make bench-night`).

The generated world of `bench/pipeline.py` at `--scale` (1x = 8,000 users and 2,000 items;
16x: 128K users, 32K items, ~368K exposures a day), cached under --raw-dir and shared with
that bench. In one process, one Spark driver, the shipped configuration
(conf/default.yaml: local Spark, Delta, sqlite-backed MLflow, all under --work):

1. Set-up (measured, not judged): ingest the --history-days days before the first night,
   backfill the four feature stages over them.
2. Night 1, the day before the last drop: the nightly's stages in its order — ingest,
   segment, sequences, item-stats, samples, train, train-baselines, evaluate, score
   (`duia_spark.stages.nightly.run_stage`, as `duia nightly` runs them). There is no
   model yet, so both models train on the whole `train.train_days` window: a full night.
3. Night 2, the last drop: the same stages; the models continue from night 1's (the
   shipped `train.incremental`) on the one new day: an incremental night.

Per stage: wall time, the rows it handled, rows/s, Spark's task metrics summed over its
jobs (shuffle, spill; `spark_metrics.py`), the Python driver's and the JVM's peak
resident memory (VmHWM), and the peak resident memory of the whole process tree (driver,
JVM, Spark's Python workers, the training processes), sampled every 0.5 s.

Beside the stages, their ceilings, measured after each night (not timed into it):
- training: the trained model alone on pre-built tensors (`bench/train.py`'s in-memory
  epoch) over --ceiling-rows rows of the night's samples, against the rate the train
  loop logged for its epochs;
- scoring: the champion in one in-process loop (`score_frame`, torch on every core) over
  --ceiling-rows of the night's candidate rows, against the score stage's rows/s
  end to end (candidates, features, model, top-k, the Delta write).

Writes bench/results/<--results-name>.md and .csv, with the goals MET / MISSED. Each step
is appended to <work>/steps.jsonl as it ends; `--resume` skips the steps found there.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

from pipeline import _generate, _mb  # noqa: E402
from pipeline import run_stage as run_cli_stage  # noqa: E402
from provenance import write_result  # noqa: E402
from spark_metrics import SparkMetricsRecorder  # noqa: E402

from duia_spark.pipeline import NIGHTLY_STAGES  # noqa: E402

# Goals of the issue "The whole night at scale".
NIGHT_GOAL_MIN = 30.0  # an incremental 16x night within 30 minutes on 2 cores
TRAIN_SHARE_GOAL = 0.2  # the incremental train stages within 1/5 of a full retrain's
SCORE_GOAL = 0.5  # scoring at least 0.5x the in-process forward rate
TRAIN_STAGES = ("train", "train-baselines")

# What each feature stage's rows are: (table, date column, unit).
DAY_OUTPUT = {
    "ingest": ("events", "event_date", "events"),
    "segment": ("user_activity", "activity_date", "users"),
    "sequences": ("user_sequences", "as_of_date", "users"),
    "item-stats": ("item_stats", "stats_date", "items"),
    "samples": ("samples", "sample_date", "samples"),
    "evaluate": ("samples", "sample_date", "samples"),
}


# ---------------------------------------------------------------------- memory
class TreePeak:
    """Peak resident memory of this process and all its descendants, sampled."""

    def __init__(self, every_s: float = 0.5):
        self.every_s = every_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # ended between the listing and now
                total += p.memory_info().rss
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._sample())
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreePeak:
        self._peak = self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self._peak / 2**20


# ---------------------------------------------------------------------- steps
@dataclass
class StepLog:
    """The steps measured so far, appended to a JSON-lines file as each ends."""

    path: Path
    steps: list[dict] = field(default_factory=list)

    def load(self) -> None:
        if self.path.exists():
            self.steps = [json.loads(x) for x in self.path.read_text().splitlines() if x]

    def done(self, name: str) -> dict | None:
        return next((s for s in self.steps if s["step"] == name), None)

    def add(self, step: dict) -> None:
        self.steps.append(step)
        with self.path.open("a") as f:
            f.write(json.dumps(step) + "\n")


def measure(recorder, log: StepLog, name: str, fn, after=None) -> dict:
    """Run fn() as one measured step and record it, with what after() adds (untimed);
    on --resume, the step recorded earlier."""
    if (old := log.done(name)) is not None:
        print(f"[bench] {name}: recorded earlier ({old['wall_s']:.0f} s), skipped", flush=True)
        return old
    print(f"[bench] {name} ...", flush=True)
    with TreePeak() as tree:
        metrics, _ = recorder.measure(name, fn)
    print(f"[bench] {name}: {metrics.wall_s:.1f} s", flush=True)
    step = {**metrics.as_dict(), "tree_peak_mb": tree.peak_mb, **(after() if after else {})}
    log.add(step)
    return step


# ---------------------------------------------------------------------- what a stage did
def day_rows(lake, stage: str, day: dt.date) -> dict:
    """{rows, unit}: the rows of D's partition of the table the stage writes (or reads)."""
    from pyspark.sql import functions as F

    if stage not in DAY_OUTPUT:
        return {}
    table, column, unit = DAY_OUTPUT[stage]
    return {"rows": lake.read(table).where(F.col(column) == F.lit(day)).count(), "unit": unit}


def training_runs(cfg, day: dt.date) -> list[dict]:
    """The runs trained for `day` (one per variant): rows, mode, epochs, the loop's rate."""
    import mlflow

    from duia_spark import tracking

    tracking.configure_mlflow(cfg)
    runs = mlflow.search_runs(
        experiment_names=[cfg.mlflow.experiment],
        filter_string=f"tags.data_date = '{day}' and tags.kind = 'training'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    out, seen = [], set()
    for run in runs:
        tags = run.data.tags
        if tags["variant"] in seen:
            continue
        seen.add(tags["variant"])
        history = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/history.json")["history"]
        epochs = [h for h in history if h.get("epoch", 0) >= 1]
        rows = int(tags["lineage.train_rows"])
        loop_s = sum(rows / h["samples_per_s"] for h in epochs if h.get("samples_per_s"))
        out.append(
            {
                "variant": tags["variant"],
                "mode": tags.get("training_mode", "?"),
                "train_rows": rows,
                "epochs": len(epochs),
                "loop_samples_per_s": rows * len(epochs) / loop_s if loop_s else float("nan"),
                "stage_wall_s": float(run.data.metrics.get("train_wall_s", float("nan"))),
                "run_id": run.info.run_id,
            }
        )
    return out


def training_ceiling(cfg, lake, day: dt.date, run_id: str, rows: int) -> float:
    """Samples/s of the trained model alone on pre-built tensors of the day's samples."""
    import tempfile

    from pyspark.sql import functions as F
    from train import in_memory_epoch

    from duia_spark.contract import ARTIFACT_CONFIG
    from duia_spark.model.config import ModelConfig
    from duia_spark.model_checksums import download_checked_files
    from duia_spark.training.dataset import select_training_columns

    with tempfile.TemporaryDirectory(prefix="duia-bench-night-") as tmp:
        uri = f"runs:/{run_id}/model"
        files = download_checked_files(uri, tmp, [ARTIFACT_CONFIG], "bench", "")
        model_cfg = ModelConfig.from_dict(json.loads(files[ARTIFACT_CONFIG].read_text()))
    samples = lake.read("samples").where(F.col("sample_date") == F.lit(day))
    pdf = select_training_columns(samples, model_cfg).limit(rows).toPandas()
    return in_memory_epoch(model_cfg, cfg.train, pdf)


def scoring_rows_and_ceiling(cfg, lake, day: dt.date, rows: int) -> tuple[int, float]:
    """(the night's candidate rows, the champion's in-process rows/s over `rows` of them)."""
    import tempfile

    from duia_spark.contract import MODEL_FILES, available_input_columns
    from duia_spark.stages import score as stage
    from duia_spark.training.pyfunc import load_ranker, score_frame

    with tempfile.TemporaryDirectory(prefix="duia-bench-night-") as tmp:
        version, files = stage.download_champion(cfg, Path(tmp))
        ranker = load_ranker(*(str(files[k]) for k in MODEL_FILES))
        payload = stage.ModelPayload.from_files("bench", version, files, cfg.score.worker_threads)
    inputs = stage._DayInputs.read(lake, day)
    model = stage.broadcast_model(lake.spark, payload)
    cached: list = []
    try:
        pairs = stage._candidate_pairs(cfg, cfg.score, lake, inputs, model, cached)
        n = pairs.count()
        features = inputs.features(pairs, cfg)
        keep = ["user_id", "item_id"]
        cols = [c for c in available_input_columns(features.columns) if c not in keep]
        frame = features.select(*keep, *cols).limit(rows).toPandas()
    finally:
        for df in cached:
            df.unpersist()
        model.unpersist()
    batch = cfg.score.batch_size
    score_frame(ranker, frame.iloc[:batch], batch)  # warm-up
    t0 = time.perf_counter()
    score_frame(ranker, frame, batch)
    return n, len(frame) / (time.perf_counter() - t0)


# ---------------------------------------------------------------------- the nights
def run_night(
    cfg, lake, recorder, log: StepLog, label: str, day: dt.date, raw: str, a, score: bool = True
) -> dict:
    """The night's stages, measured; `score=False` leaves the score stage out."""
    from duia_spark.stages.nightly import run_stage

    steps = {}
    for stage in NIGHTLY_STAGES if score else NIGHTLY_STAGES[:-1]:
        name = f"{label} {stage}"
        steps[stage] = measure(
            recorder,
            log,
            name,
            lambda stage=stage: run_stage(cfg, stage, day, raw, "synthetic"),
            after=lambda stage=stage: day_rows(lake, stage, day),
        )
    extra_name = f"{label} ceilings"
    extra = log.done(extra_name)
    if extra is None:
        print(f"[bench] {label}: training runs and ceilings (not timed into the night)")
        runs = training_runs(cfg, day)
        for r in runs:
            r["ceiling_samples_per_s"] = training_ceiling(
                cfg, lake, day - dt.timedelta(days=1), r["run_id"], a.ceiling_rows
            )
        candidates, in_process = (
            scoring_rows_and_ceiling(cfg, lake, day, a.ceiling_rows) if score else (None, None)
        )
        extra = {"step": extra_name, "wall_s": 0.0, "runs": runs, "candidates": candidates,
                 "score_in_process_rows_per_s": in_process}  # fmt: skip
        log.add(extra)
    return {"day": str(day), "steps": steps, **extra}


def setup(cfg, recorder, log: StepLog, raw: str, history: list[dt.date]) -> list[dict]:
    first, last = str(history[0]), str(history[-1])
    return [
        measure(
            recorder, log, f"ingest history ({len(history)} days)",
            lambda: run_cli_stage(cfg, "ingest", "--source", "synthetic", "--path", raw,
                                  "--date", first, "--end-date", last),
        ),
        measure(
            recorder, log, f"backfill {len(history)} days, 4 stages",
            lambda: run_cli_stage(cfg, "backfill", "--date", first, "--end-date", last),
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------------- report
def stage_table(night: dict) -> list[str]:
    head = (
        "| stage | rows | rows/s | wall s | shuffle read MB | shuffle write MB | spill MB "
        "| Python driver peak MB | JVM peak MB | process tree peak MB |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total = 0.0
    for stage, s in night["steps"].items():
        rows, unit = s.get("rows"), s.get("unit", "")
        if stage in TRAIN_STAGES:
            runs = [r for r in night["runs"] if (r["variant"] == "ple") == (stage != "train")]
            rows = sum(r["train_rows"] * r["epochs"] for r in runs)
            unit = "samples x epochs"
        if stage == "score":
            rows, unit = night["candidates"], "candidate rows"
        rate = f"{rows / s['wall_s']:,.0f}" if rows else "-"
        shown = f"{rows:,d} {unit}" if rows is not None else "-"
        spill = s["memory_spilled_bytes"] + s["disk_spilled_bytes"]
        lines.append(
            f"| {stage} | {shown} | {rate} | {s['wall_s']:.1f} | {_mb(s['shuffle_read_bytes'])} "
            f"| {_mb(s['shuffle_write_bytes'])} | {_mb(spill)} | {s['python_peak_mb']:,.0f} "
            f"| {s['jvm_peak_mb']:,.0f} | {s['tree_peak_mb']:,.0f} |"
        )
        total += s["wall_s"]
    if "score" not in night["steps"]:
        lines.append("| score | not run (`--skip-full-night-score`) | | | | | | | | |")
    lines.append(f"| **the night** | | | **{total:.1f}** ({total / 60:.1f} min) | | | | | | |")
    return lines


def train_table(nights: list[dict]) -> list[str]:
    lines = [
        "| night | model | mode | rows | epochs | train loop samples/s | in-memory ceiling "
        "samples/s | loop / ceiling |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for n in nights:
        for r in n["runs"]:
            ratio = r["loop_samples_per_s"] / r["ceiling_samples_per_s"]
            lines.append(
                f"| {n['day']} | {r['variant']} | {r['mode']} | {r['train_rows']:,d} | "
                f"{r['epochs']} | {r['loop_samples_per_s']:,.0f} | "
                f"{r['ceiling_samples_per_s']:,.0f} | {ratio:.2f} |"
            )
    return lines


def night_seconds(night: dict, stages=NIGHTLY_STAGES) -> float:
    return sum(night["steps"][s]["wall_s"] for s in stages if s in night["steps"])


def goals(full: dict, incr: dict, scale: int) -> list[str]:
    incr_min = night_seconds(incr) / 60
    share = night_seconds(incr, TRAIN_STAGES) / night_seconds(full, TRAIN_STAGES)
    score_rate = incr["candidates"] / incr["steps"]["score"]["wall_s"]
    score_ratio = score_rate / incr["score_in_process_rows_per_s"]
    at = f" (at {scale}x; the goals are stated for 16x)" if scale != 16 else ""

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    return [
        "| goal | measured | status |",
        "|---|---|---|",
        f"| an incremental night within {NIGHT_GOAL_MIN:.0f} min on 2 cores{at} | "
        f"{incr_min:.1f} min | {verdict(incr_min <= NIGHT_GOAL_MIN)} |",
        f"| incremental train stages within {TRAIN_SHARE_GOAL:.1f}x a full retrain's{at} | "
        f"{night_seconds(incr, TRAIN_STAGES):.0f} s vs {night_seconds(full, TRAIN_STAGES):.0f} s "
        f"= {share:.2f}x | {verdict(share <= TRAIN_SHARE_GOAL)} |",
        f"| scoring at least {SCORE_GOAL}x the in-process forward rate{at} | stage "
        f"{score_rate:,.0f} rows/s vs in-process {incr['score_in_process_rows_per_s']:,.0f} "
        f"= {score_ratio:.2f}x | {verdict(score_ratio >= SCORE_GOAL)} |",
    ]


def report(a, world: dict, setup_steps: list[dict], full: dict, incr: dict) -> str:
    setup_s = sum(s["wall_s"] for s in setup_steps)
    parts = [
        f"# A whole night at {a.scale}x (`python bench/night.py`)",
        "",
        f"{world['users']:,d} users, {world['items']:,d} items, {a.history_days} days of "
        f"history ingested and backfilled before the first night (set-up {setup_s:.0f} s, "
        f"not judged); Spark {a.master}, the shipped configuration (conf/default.yaml: "
        f"{world['fusion']} fusion, train_days {world['train_days']}, epochs up to "
        f"{world['epochs']}, incremental {world['incremental']}), "
        f"load average {world['load']:.1f} at the start.",
        "",
        "## Goals",
        "",
        *goals(full, incr, a.scale),
        "",
        f"## Night 1, {full['day']}: full (no model yet: both train the whole window)",
        "",
        *stage_table(full),
        "",
        f"## Night 2, {incr['day']}: incremental (both continue from night 1's models)",
        "",
        *stage_table(incr),
        "",
        "## Training beside its ceiling",
        "",
        *train_table([full, incr]),
        "",
        "## Scoring beside the in-process forward rate",
        "",
        "| night | candidate rows | stage wall s | stage rows/s | in-process rows/s | ratio |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {n['day']} | {n['candidates']:,d} | {n['steps']['score']['wall_s']:.1f} | "
            f"{n['candidates'] / n['steps']['score']['wall_s']:,.0f} | "
            f"{n['score_in_process_rows_per_s']:,.0f} | "
            f"{n['candidates'] / n['steps']['score']['wall_s'] / n['score_in_process_rows_per_s']:.2f} |"
            for n in (full, incr)
            if "score" in n["steps"]
        ],
        "",
        "Rows: what the stage handled — events landed (ingest), users (segment, sequences), "
        "items (item-stats), samples built (samples), samples x epochs trained over both "
        "models' runs (train: the served variant; train-baselines: the `ple` baseline), the "
        "day's samples each model is scored on (evaluate), candidate rows scored (score). "
        "Shuffle and spill: Spark's task metrics summed over the stage's jobs (Petastorm's "
        "materialisation of the training rows included). Peaks: VmHWM of the Python driver "
        "and the driver JVM (in local mode it runs the tasks), and the resident memory of the "
        "whole process tree (Spark's Python workers and the training processes included), "
        "sampled every 0.5 s. Train loop samples/s: the rows of each epoch over the epoch's "
        "time as the trainer logged it (Petastorm → DataLoader → step), beside the same model "
        "on --ceiling-rows pre-built tensors of the night's eve. Scoring in-process: the "
        f"champion's `score_frame` on {a.ceiling_rows:,d} of the night's candidate rows, "
        "torch on every core; the stage's rate counts everything from the champion's "
        "download to the Delta write.",
    ]
    return "\n".join(parts)


def write_csv(path: Path, nights: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["night", "stage", "rows", "unit", "wall_s", "shuffle_read_bytes",
                    "shuffle_write_bytes", "spilled_bytes", "python_peak_mb", "jvm_peak_mb",
                    "tree_peak_mb"])  # fmt: skip
        for n in nights:
            for stage, s in n["steps"].items():
                w.writerow([n["day"], stage, s.get("rows", ""), s.get("unit", ""),
                            f"{s['wall_s']:.2f}", s["shuffle_read_bytes"], s["shuffle_write_bytes"],
                            s["memory_spilled_bytes"] + s["disk_spilled_bytes"],
                            f"{s['python_peak_mb']:.0f}", f"{s['jvm_peak_mb']:.0f}",
                            f"{s['tree_peak_mb']:.0f}"])  # fmt: skip


# ---------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=16, help="data multiplier (1x: 8,000 users)")
    p.add_argument("--users", type=int, default=8_000, help="users at 1x")
    p.add_argument("--items", type=int, default=2_000, help="items at 1x")
    p.add_argument("--days", type=int, default=29, help="daily drops generated (pipeline.py's)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--history-days", type=int, default=15,
                   help="days ingested and backfilled before night 1 (>= train.train_days + 1)")  # fmt: skip
    p.add_argument("--ceiling-rows", type=int, default=50_000)
    p.add_argument(
        "--skip-full-night-score",
        action="store_true",
        help="night 1 runs every stage but score (the same candidates and model size as "
        "night 2's; saves the largest stage once at scale)",
    )
    p.add_argument("--master", default="local[2]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--raw-dir", default="/tmp/duia-bench", help="generated logs are cached here")
    p.add_argument("--work", help="lakehouse, MLflow store, caches (default <raw-dir>/night-<N>x)")
    p.add_argument("--resume", action="store_true", help="keep --work and its recorded steps")
    p.add_argument("--results-name", help="bench/results/<name>.md (default night_<N>x)")
    a = p.parse_args()

    raw = Path(a.raw_dir) / f"raw-{a.scale}x"
    work = Path(a.work or Path(a.raw_dir) / f"night-{a.scale}x")
    users, items = a.users * a.scale, a.items * a.scale
    a.load = os.getloadavg()[0]
    _generate(raw, users, items, a.days, a.seed, a)
    from duia_spark.sources.daily_drops import list_drop_dates

    drops = list_drop_dates(str(raw))
    night1, night2 = drops[-2], drops[-1]
    history = [d for d in drops if d < night1][-a.history_days :]
    if not a.resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)

    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.quiet import quiet_logs
    from duia_spark.session import build_spark_session

    quiet_logs()
    cfg = load_config(
        overrides=[
            f"lakehouse.root={work / 'lake'}",
            f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
            f"mlflow.artifact_root={work / 'mlartifacts'}",
            f"train.checkpoint_dir={work / 'checkpoints'}",
            f"train.petastorm_cache_dir={work / 'petastorm'}",
            f"spark.master={a.master}",
            *a.set,
        ]
    )
    if len(history) < cfg.train.train_days + 1:
        p.error(f"--history-days {a.history_days}: train.train_days + 1 days are needed")
    spark = build_spark_session(cfg, "duia-bench-night")
    lake = Lakehouse(spark, cfg)
    recorder = SparkMetricsRecorder(spark)
    log = StepLog(work / "steps.jsonl")
    if a.resume:
        log.load()
    world = {
        "users": users, "items": items, "load": a.load, "fusion": cfg.model.enhancement_fusion,
        "train_days": cfg.train.train_days, "epochs": cfg.train.epochs,
        "incremental": cfg.train.incremental,
    }  # fmt: skip
    print(f"[bench] {a.scale}x: {users:,d} users; nights {night1} (full) and {night2}", flush=True)
    setup_steps = setup(cfg, recorder, log, str(raw), history)
    full = run_night(
        cfg, lake, recorder, log, "night 1", night1, str(raw), a, not a.skip_full_night_score
    )
    incr = run_night(cfg, lake, recorder, log, "night 2", night2, str(raw), a)
    spark.stop()

    md = report(a, world, setup_steps, full, incr)
    print(md)
    name = a.results_name or f"night_{a.scale}x"
    write_result(RESULTS / f"{name}.md", md)
    write_csv(RESULTS / f"{name}.csv", [full, incr])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
