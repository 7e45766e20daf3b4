"""The nightly feature jobs at scale: `python bench/pipeline.py` (`make bench-pipeline`).

Sizes are multiples (`--scales`) of 1x = 8,000 users and 2,000 items over 29 daily drops
(the night's day and 28 days of history): 1x ~ 0.6M events, 4x ~ 2.5M, 16x ~ 10M
(128K users, 32K items), 64x ~ 40M (512K users, 128K items). For each size:

1. Generate the logs with Spark (cached under --raw-dir and reused while users, items,
   days and seed match; the time it takes is printed and reported). The generator's
   partitions grow with the size (8 up to 4x, then 2 per 1x), so from 4x on a task
   draws about 11K rows of a day and a daily file holds about 45K.
2. In a fresh process (one Spark driver per size, so peak memory is per size): ingest the
   history (setup), backfill the four feature stages for the --backfill-days days before
   the last day D (setup: D-1's sequences snapshot and vocabulary), then the night of D —
   ingest of one day, segment, sequences (incremental), item-stats, samples — and a
   sequences full rebuild for comparison.
3. Before each stage of the night, its ceiling: the plainest Spark pass over the same
   input — the stage's input columns read from Delta (the raw Parquet drop for ingest),
   one groupBy on user_id (item_id for item-stats), written to the `noop` sink — and the
   stage's time as a multiple of it.
4. History vs volume (--history-days, at --history-scale, default the largest size): the
   same night with only 7 days of history behind D (same daily volume) next to the night
   with all 28.

Per step: wall time, input rows, events/s, Spark's own task metrics summed over the
step's jobs (shuffle read/write bytes, spill to memory and disk; `spark_metrics.py`), and
the step's peak Python driver and driver JVM memory (VmHWM). Prints the tables and writes
bench/results/<--results-name>.md and .csv, with each goal MET, MISSED or NOT RUN (a size
that was not run is never given a number).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

from provenance import write_result  # noqa: E402
from spark_metrics import SparkMetricsRecorder, ceiling_pass  # noqa: E402

# The night's stages in order: (step name, stage, extra flags).
NIGHT = [
    ("ingest (one day)", "ingest", ["--source", "synthetic"]),
    ("segment (incremental)", "segment", []),
    ("sequences (incremental)", "sequences", []),
    ("item-stats (incremental)", "item-stats", []),
    ("samples", "samples", []),
]
# The incremental stages once more, recounting from the events, for comparison.
FULL_REBUILDS = [
    (f"{stage} (full rebuild)", stage, ["--full-rebuild"])
    for stage in ("segment", "sequences", "item-stats")
]
NIGHT_STEPS = [name for name, _, _ in NIGHT]

# Goals of the issue "Scale: the nightly at 10M and 40M events".
CEILING_GOAL, CEILING_SCALE = 5.0, 64  # each night stage within 5x its ceiling at 64x
HISTORY_GOAL = 1.2  # 4x the history costs at most 1.2x the night's time
SPILL_SCALE = 16  # no spill at 16x
MEMORY_GOAL, MEMORY_SCALE = 1.1, 64  # Python driver peak at 64x within 1.1x of the smallest


def generator_partitions(scale: int) -> int:
    """8 up to 4x (as 1x and 4x were recorded), then 2 per 1x: from 4x on, a task draws
    about 11K rows of a day and each of the day's partitions / 4 files holds about 45K."""
    return max(8, 2 * scale)


# ---------------------------------------------------------------------- one night
@dataclass
class StageInput:
    table: str
    frame: object  # DataFrame of the columns the stage reads
    key: str
    events: bool  # rows are events (bronze.events or the raw drop)


def night_inputs(lake, cfg, raw: str, stage: str, argv: list[str], day: dt.date):
    """What a night stage reads, as frames of the columns it uses (for rows and ceiling)."""
    from pyspark.sql import functions as F

    from duia_spark.data.activity import activity_counts, activity_window
    from duia_spark.data.item_stats import item_counts, item_stats_window
    from duia_spark.data.schema import SIGNALS
    from duia_spark.data.sliding_window import days_read

    def events(first: dt.date, last: dt.date, cols: list[str]):
        df = lake.read("events").where(F.col("event_date").between(first, last))
        return df.select(*[c for c in cols if c in df.columns])

    def events_on(days: list[dt.date], cols: list[str]):
        df = lake.read("events").where(F.col("event_date").isin(days))
        return df.select(*[c for c in cols if c in df.columns])

    def partition(table: str, column: str, at: dt.date):
        return lake.read(table).where(F.col(column) == F.lit(at))

    before = day - dt.timedelta(days=1)
    behaviour = ["user_id", "item_id", "event_ts", "event_date", *SIGNALS]
    if stage == "ingest":
        drop = Path(raw) / "log" / day.isoformat() / "parquet"
        return [StageInput("raw drop", lake.spark.read.parquet(str(drop)), "user_id", True)]
    full = "--full-rebuild" in argv
    if stage == "segment":
        a = cfg.activity
        cols = ["user_id", "event_date", *a.valid_signals, "play_time_ms"]
        if full:
            first, _ = activity_window(day, a)
            return [StageInput("events", events(first, day, cols), "user_id", True)]
        read = [*days_read(day, activity_counts(a)), day]
        return [
            StageInput("events", events_on(read, cols), "user_id", True),
            StageInput("user_activity", partition("user_activity", "activity_date", before), "user_id", False),
        ]  # fmt: skip
    if stage == "sequences" and full:
        first = dt.date(1970, 1, 1)
        return [StageInput("events", events(first, before, behaviour), "user_id", True)]
    if stage == "sequences":
        return [
            StageInput("events", events(before, before, behaviour), "user_id", True),
            StageInput(
                "user_sequences",
                partition("user_sequences", "as_of_date", before),
                "user_id",
                False,
            ),
        ]
    if stage == "item-stats":
        cols = ["item_id", "event_date", *cfg.item_stats.rate_signals]
        if full:
            first, last = item_stats_window(day, cfg.item_stats)
            return [StageInput("events", events(first, last, cols), "item_id", True)]
        read = days_read(day, item_counts(cfg.item_stats))
        return [
            StageInput("events", events_on(read, cols), "item_id", True),
            StageInput("item_stats", partition("item_stats", "stats_date", before), "item_id", False),
        ]  # fmt: skip
    if stage == "samples":
        ev = lake.read("events").where(F.col("event_date") == F.lit(day))
        out = [
            StageInput("events", ev, "user_id", True),
            StageInput(
                "user_activity", partition("user_activity", "activity_date", day), "user_id", False
            ),
            StageInput(
                "user_sequences", partition("user_sequences", "as_of_date", day), "user_id", False
            ),
            StageInput("item_stats", partition("item_stats", "stats_date", day), "item_id", False),
            StageInput("vocabulary", lake.read("vocabulary"), "id", False),
        ]
        for table, key in (("user_profiles", "user_id"), ("item_features", "item_id")):
            if lake.exists(table):
                out.append(StageInput(table, lake.read(table), key, False))
        return out
    raise ValueError(f"no input spec for stage {stage!r}")


def run_stage(cfg, stage: str, *argv: str) -> None:
    from duia_spark.cli import build_parser
    from duia_spark.stages import load_stage

    args = build_parser().parse_args([stage, *argv])
    rc = load_stage(stage).run(cfg, args)
    if rc != 0:
        raise RuntimeError(f"duia {stage} {' '.join(argv)} exited {rc}")


def run_night(
    spark, cfg, raw: str, history_days: int, backfill_days: int, full_rebuild: bool, log=print
) -> dict:
    """On an empty lakehouse: ingest `history_days` days before the last drop D, backfill
    `backfill_days` of them, then measure D's night stage by stage, each with its ceiling."""
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.sources.daily_drops import list_drop_dates

    lake = Lakehouse(spark, cfg)
    recorder = SparkMetricsRecorder(spark)
    drops = list_drop_dates(raw)
    day = drops[-1]
    history = [d for d in drops if day - dt.timedelta(days=history_days) <= d < day]
    if history_days < 1 or len(history) < history_days:
        raise ValueError(
            f"{raw} holds {len(drops)} daily drops: {history_days} days of history need "
            f"{history_days + 1}"
        )
    steps = []

    def setup(name: str, stage: str, *argv: str) -> None:
        log(f"[bench] {name}")
        m, _ = recorder.measure(name, lambda: run_stage(cfg, stage, *argv))
        steps.append({"kind": "setup", "input_rows": None, "event_rows": None, **m.as_dict()})

    setup(
        f"ingest history ({history_days} days)",
        "ingest", "--source", "synthetic", "--path", raw,
        "--date", str(history[0]), "--end-date", str(history[-1]),
    )  # fmt: skip
    backfill = min(backfill_days, history_days)
    if backfill:
        setup(
            f"backfill {backfill} day(s), 4 stages",
            "backfill", "--date", str(day - dt.timedelta(days=backfill)),
            "--end-date", str(day - dt.timedelta(days=1)),
        )  # fmt: skip

    night = [*NIGHT, *FULL_REBUILDS] if full_rebuild else NIGHT
    for name, stage, flags in night:
        argv = [*flags, "--date", str(day)] + (["--path", raw] if stage == "ingest" else [])
        inputs = night_inputs(lake, cfg, raw, stage, argv, day)
        rows = [i.frame.count() for i in inputs]
        log(f"[bench] {name}: {sum(rows):,d} input rows ({', '.join(i.table for i in inputs)})")
        ceiling, _ = recorder.measure(
            f"{name} ceiling",
            lambda inputs=inputs: ceiling_pass([(i.frame, i.key) for i in inputs]),
        )
        m, _ = recorder.measure(name, lambda stage=stage, argv=argv: run_stage(cfg, stage, *argv))
        log(f"[bench] {name}: {m.wall_s:.1f} s, ceiling {ceiling.wall_s:.1f} s")
        steps.append(
            {
                "kind": "night" if name in NIGHT_STEPS else "compare",
                "input_rows": sum(rows),
                "event_rows": sum(n for n, i in zip(rows, inputs, strict=True) if i.events),
                **m.as_dict(),
                "ceiling": ceiling.as_dict(),
            }
        )
    every = steps + [s["ceiling"] for s in steps if "ceiling" in s]
    return {
        "night": str(day),
        "history_days": history_days,
        "backfill_days": backfill,
        "events_total": lake.read("events").where(F.col("event_date") <= F.lit(day)).count(),
        "steps": steps,
        "python_peak_mb": max(s["python_peak_mb"] for s in every),
        "jvm_peak_mb": max(s["jvm_peak_mb"] for s in every),
        "peaks_per_step": recorder.peaks_per_step,
        "spark": {
            "master": cfg.spark.master,
            "shuffle_partitions": cfg.spark.shuffle_partitions,
            "driver_memory": cfg.spark.driver_memory,
        },
    }


def worker(spec: dict) -> dict:
    """Runs in its own process: one Spark driver for one size."""
    from duia_spark.config import load_config
    from duia_spark.session import build_spark_session

    cfg = load_config(
        overrides=[
            f"lakehouse.root={spec['lake']}",
            f"spark.master={spec['master']}",
            *spec["overrides"],
        ]
    )
    spark = build_spark_session(cfg, "duia-bench-pipeline")
    try:
        return run_night(
            spark,
            cfg,
            spec["raw"],
            spec["history_days"],
            spec["backfill_days"],
            spec["full_rebuild"],
        )
    finally:
        spark.stop()


# ---------------------------------------------------------------------- driver
def _generate(raw: Path, users: int, items: int, days: int, seed: int, a) -> float | None:
    """Generate the logs unless a matching set is cached; -> seconds, None when reused."""
    manifest = raw / "_manifest.json"
    if manifest.exists():
        g = json.loads(manifest.read_text())["generator"]
        if (g["users"], g["items"], g["days"], g["seed"]) == (users, items, days, seed) and (
            "parquet" in g["formats"]
        ):
            print(f"[bench] reusing the generated logs in {raw}")
            return None
    shutil.rmtree(raw, ignore_errors=True)
    scale = users // a.users
    t0 = dt.datetime.now()
    subprocess.run(
        [sys.executable, "-m", "duia_spark.cli", "generate", "--out", str(raw), "--users", str(users),
         "--items", str(items), "--days", str(days), "--seed", str(seed), "--formats", "parquet",
         "--master", a.master, "--set", f"generator.partitions={generator_partitions(scale)}",
         *[x for o in a.set for x in ("--set", o)]],
        check=True,
    )  # fmt: skip
    seconds = (dt.datetime.now() - t0).total_seconds()
    print(
        f"[bench] generated {days} days for {users:,d} users x {items:,d} items in {seconds:.0f} s"
    )
    return seconds


def _run_worker(spec: dict) -> dict:
    Path(spec["lake"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(spec["lake"], ignore_errors=True)
    tail: collections.deque[str] = collections.deque(maxlen=60)
    result = None
    with subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        for line in proc.stdout:
            if line.startswith("BENCH_RESULT "):
                result = json.loads(line.split(" ", 1)[1])
                continue
            tail.append(line)
            if line.startswith("[bench]"):
                print(line, end="", flush=True)  # progress of a run that may take an hour
    if not spec.get("keep_lake"):
        shutil.rmtree(spec["lake"], ignore_errors=True)
    if proc.returncode != 0 or result is None:
        print("".join(tail))
        raise SystemExit(f"[bench] the run on {spec['raw']} failed (exit {proc.returncode})")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="1,4", help="comma list of data multipliers, e.g. 1,16,64")
    p.add_argument("--users", type=int, default=8_000, help="users at 1x")
    p.add_argument("--items", type=int, default=2_000, help="items at 1x")
    p.add_argument("--days", type=int, default=29, help="daily drops: the night's day + history")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--master", default="local[2]")
    p.add_argument(
        "--backfill-days", type=int, default=1, help="days before the night backfilled (setup)"
    )
    p.add_argument(
        "--history-days",
        type=int,
        default=7,
        help="short history for the history-vs-volume run (0: skip it)",
    )
    p.add_argument(
        "--history-scale", type=int, help="size of the history run (default: the largest)"
    )
    p.add_argument(
        "--night-history-days",
        type=int,
        help="days of history ingested behind the measured night (default: --days - 1); "
        "fewer make a large size's set-up shorter, the night's daily volume is the same",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, e.g. spark.shuffle_partitions=64 (repeatable)",
    )
    p.add_argument("--raw-dir", default="/tmp/duia-bench", help="generated logs are cached here")
    p.add_argument(
        "--results-name", default="pipeline", help="writes bench/results/<name>.md and .csv"
    )
    p.add_argument(
        "--keep-lake",
        action="store_true",
        help="keep each size's lakehouse (<raw-dir>/lake-<N>x) after its run, to profile a "
        "stage on it (the next run of that size starts it afresh)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print("BENCH_RESULT " + json.dumps(worker(json.loads(a.worker))))
        return 0

    scales = sorted({int(s) for s in a.scales.split(",")})
    history_scale = a.history_scale or scales[-1]
    if a.history_days and history_scale not in scales:
        p.error(f"--history-scale {history_scale} is not one of --scales {a.scales}")
    night_history = a.night_history_days or a.days - 1
    if not 1 <= night_history <= a.days - 1:
        p.error(f"--night-history-days {night_history} must be in 1..{a.days - 1} (--days - 1)")
    if a.history_days and a.history_days >= night_history:
        p.error(f"--history-days {a.history_days} must be below the night's {night_history}")
    a.load = os.getloadavg()[0]
    base = Path(a.raw_dir)
    runs: dict[int, dict] = {}
    history_run = None
    for scale in scales:
        raw = base / f"raw-{scale}x"
        users, items = a.users * scale, a.items * scale
        generate_s = _generate(raw, users, items, a.days, a.seed, a)
        spec = {
            "raw": str(raw),
            "lake": str(base / f"lake-{scale}x"),
            "master": a.master,
            "overrides": a.set,
            "history_days": night_history,
            "backfill_days": a.backfill_days,
            "full_rebuild": True,
            "keep_lake": a.keep_lake,
        }
        print(f"[bench] {scale}x: the night with {night_history} days of history")
        runs[scale] = _run_worker(spec) | {
            "users": users,
            "items": items,
            "generate_s": generate_s,
        }
        if a.history_days and scale == history_scale:
            print(f"[bench] {scale}x: the night with {a.history_days} days of history")
            history_run = _run_worker(
                spec | {"history_days": a.history_days, "full_rebuild": False}
            ) | {"scale": scale}

    text = report(runs, history_run, a, "python bench/pipeline.py " + shlex.join(sys.argv[1:]))
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / f"{a.results_name}.md", text)
    write_csv(RESULTS / f"{a.results_name}.csv", runs, history_run)
    return 0


# ---------------------------------------------------------------------- report
def _night(run: dict) -> dict[str, dict]:
    return {s["step"]: s for s in run["steps"] if s["kind"] == "night"}


def _times_ceiling(step: dict) -> float:
    return step["wall_s"] / max(step["ceiling"]["wall_s"], 1e-9)


def _night_seconds(run: dict) -> float:
    return sum(s["wall_s"] for s in _night(run).values())


def goal_rows(runs: dict[int, dict], history_run: dict | None) -> list[tuple[str, str, str]]:
    """(goal, measured, MET / MISSED / NOT RUN) — NOT RUN whenever the size was not run."""
    rows = []
    goal = f"each night stage within {CEILING_GOAL:g}x its ceiling at {CEILING_SCALE}x"
    if CEILING_SCALE in runs:
        ratios = {k: _times_ceiling(s) for k, s in _night(runs[CEILING_SCALE]).items()}
        worst = max(ratios, key=ratios.get)
        ok = ratios[worst] <= CEILING_GOAL
        rows.append((goal, f"worst: {worst} {ratios[worst]:.1f}x", "MET" if ok else "MISSED"))
    else:
        rows.append((goal, f"{CEILING_SCALE}x not run", "NOT RUN"))

    goal = f"4x the history costs at most {HISTORY_GOAL:g}x the night's time"
    if history_run:
        scale = history_run["scale"]
        long, short = runs[scale], history_run
        ratio = _night_seconds(long) / _night_seconds(short)
        rows.append(
            (
                goal,
                f"{scale}x: {long['history_days']} vs {short['history_days']} days of history "
                f"({long['history_days'] / short['history_days']:.1f}x), "
                f"{_night_seconds(long):.0f} s vs {_night_seconds(short):.0f} s = {ratio:.2f}x",
                "MET" if ratio <= HISTORY_GOAL else "MISSED",
            )
        )
    else:
        rows.append((goal, "history run not made", "NOT RUN"))

    goal = f"driver memory flat (Python driver peak at {MEMORY_SCALE}x <= {MEMORY_GOAL:g}x the smallest size's)"
    lo = min(runs)
    if MEMORY_SCALE in runs and lo != MEMORY_SCALE:
        py = runs[MEMORY_SCALE]["python_peak_mb"] / runs[lo]["python_peak_mb"]
        jvm = runs[MEMORY_SCALE]["jvm_peak_mb"] / runs[lo]["jvm_peak_mb"]
        rows.append(
            (
                goal,
                f"{lo}x -> {MEMORY_SCALE}x: Python driver {py:.2f}x, driver JVM {jvm:.2f}x",
                "MET" if py <= MEMORY_GOAL else "MISSED",
            )
        )
    else:
        rows.append((goal, f"{MEMORY_SCALE}x not run", "NOT RUN"))

    goal = f"no spill at {SPILL_SCALE}x (night stages, memory + disk)"
    if SPILL_SCALE in runs:
        spill = sum(
            s["memory_spilled_bytes"] + s["disk_spilled_bytes"]
            for s in _night(runs[SPILL_SCALE]).values()
        )
        rows.append((goal, f"{spill / 2**20:,.1f} MB spilled", "MET" if spill == 0 else "MISSED"))
    else:
        rows.append((goal, f"{SPILL_SCALE}x not run", "NOT RUN"))
    return rows


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _step_table(run: dict) -> list[str]:
    head = (
        "| step | input rows | events/s | wall s | ceiling s | x ceiling | shuffle read MB "
        "| shuffle write MB | spill memory MB | spill disk MB | Python peak MB | JVM peak MB |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in run["steps"]:
        if "ceiling" in s:
            c = s["ceiling"]
            rate = f"{s['event_rows'] / max(s['wall_s'], 1e-9):,.0f}"
            lines.append(
                f"| {s['step']} | {s['input_rows']:,d} | {rate} | {s['wall_s']:.1f} | "
                f"{c['wall_s']:.1f} | {_times_ceiling(s):.1f} | {_mb(s['shuffle_read_bytes'])} | "
                f"{_mb(s['shuffle_write_bytes'])} | {_mb(s['memory_spilled_bytes'])} | "
                f"{_mb(s['disk_spilled_bytes'])} | {s['python_peak_mb']:,.0f} | {s['jvm_peak_mb']:,.0f} |"
            )
        else:
            lines.append(
                f"| {s['step']} (setup) | - | - | {s['wall_s']:.1f} | - | - | "
                f"{_mb(s['shuffle_read_bytes'])} | {_mb(s['shuffle_write_bytes'])} | "
                f"{_mb(s['memory_spilled_bytes'])} | {_mb(s['disk_spilled_bytes'])} | "
                f"{s['python_peak_mb']:,.0f} | {s['jvm_peak_mb']:,.0f} |"
            )
    return lines


def report(runs: dict[int, dict], history_run: dict | None, a, command: str) -> str:
    scales = sorted(runs)
    first = runs[scales[0]]
    sp = first["spark"]
    lines = [
        "# The nightly feature jobs at scale (`python bench/pipeline.py`)",
        "",
        f"`{command}` — {dt.date.today()}, Spark master {sp['master']}, {os.cpu_count()} CPU cores "
        f"(load average {getattr(a, 'load', float('nan')):.1f} at the start), "
        f"shuffle partitions {sp['shuffle_partitions']}, driver memory {sp['driver_memory']}, "
        f"{a.days} daily drops generated, the night's day and "
        f"{first['history_days']} days of history ingested behind it, "
        f"backfill {first['backfill_days']} day(s) before the night.",
        "",
        "| size | users | items | events | generation s |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in scales:
        r = runs[s]
        gen = "cached" if r["generate_s"] is None else f"{r['generate_s']:.0f}"
        lines.append(
            f"| {s}x | {r['users']:,d} | {r['items']:,d} | {r['events_total']:,d} | {gen} |"
        )
    lines += ["", "## Goals", "", "| goal | measured | status |", "|---|---|---|"]
    lines += [f"| {g} | {m} | {st} |" for g, m, st in goal_rows(runs, history_run)]
    for s in scales:
        r = runs[s]
        lines += [
            "",
            f"## {s}x: the night of {r['night']} ({r['events_total']:,d} events, "
            f"{r['history_days']} days of history)",
            "",
            *_step_table(r),
        ]
    if len(scales) > 1:
        lo, hi = scales[0], scales[-1]
        head = "| stage | " + " | ".join(f"{s}x wall s | {s}x x ceiling" for s in scales)
        head += f" | time {hi}x/{lo}x |"
        lines += ["", "## Across sizes", "", head, "|---" * (2 * len(scales) + 2) + "|"]
        for name in NIGHT_STEPS + [name for name, _, _ in FULL_REBUILDS]:
            cells = []
            for s in scales:
                st = next(x for x in runs[s]["steps"] if x["step"] == name)
                cells.append(f"{st['wall_s']:.1f} | {_times_ceiling(st):.1f}")
            w = [next(x for x in runs[s]["steps"] if x["step"] == name)["wall_s"] for s in (lo, hi)]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {w[1] / w[0]:.2f} |")
    if history_run:
        s = history_run["scale"]
        long, short = _night(runs[s]), _night(history_run)
        hl, hs = runs[s]["history_days"], history_run["history_days"]
        lines += [
            "",
            f"## History vs volume at {s}x: the same night with {hs} and {hl} days of history",
            "",
            f"| stage | input rows ({hs} d) | input rows ({hl} d) | wall s ({hs} d) | "
            f"wall s ({hl} d) | time {hl} d / {hs} d |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in NIGHT_STEPS:
            a_, b_ = short[name], long[name]
            lines.append(
                f"| {name} | {a_['input_rows']:,d} | {b_['input_rows']:,d} | {a_['wall_s']:.1f} | "
                f"{b_['wall_s']:.1f} | {b_['wall_s'] / a_['wall_s']:.2f} |"
            )
        t_s, t_l = _night_seconds(history_run), _night_seconds(runs[s])
        lines.append(f"| the night | | | {t_s:.1f} | {t_l:.1f} | {t_l / t_s:.2f} |")
    per_step = first["peaks_per_step"]
    lines += [
        "",
        "Input rows: the rows of every input the stage reads (events of its window, and the "
        "snapshot or feature tables it joins). Events/s: the events among them / wall time. "
        "Ceiling: one plain Spark pass over the same input columns (one groupBy on user_id, "
        "item_id for item-stats; `noop` sink), run just before the stage. Shuffle and spill: "
        "Spark's task metrics summed over every job between the step's start and end "
        "(Delta's own jobs included). Peak memory: VmHWM of the Python driver and the driver "
        "JVM "
        + ("during the step" if per_step else "since the process started")
        + "; in local mode the JVM also runs the executors' tasks, so its peak includes "
        "task memory, bounded by spark.driver.memory. Setup rows are measured but not judged.",
    ]
    return "\n".join(lines) + "\n"


CSV_FIELDS = [
    "wall_s", "jobs", "spark_stages", "tasks", "input_records", "input_bytes",
    "shuffle_read_bytes", "shuffle_write_bytes", "memory_spilled_bytes", "disk_spilled_bytes",
    "executor_run_s", "python_peak_mb", "jvm_peak_mb",
]  # fmt: skip


def write_csv(path: Path, runs: dict[int, dict], history_run: dict | None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["scale", "history_days", "events_total", "kind", "step", "measure", "input_rows", "event_rows", *CSV_FIELDS]
        )  # fmt: skip
        done = [(s, r) for s, r in sorted(runs.items())]
        if history_run:
            done.append((history_run["scale"], history_run))
        for scale, r in done:
            for st in r["steps"]:
                head = [scale, r["history_days"], r["events_total"], st["kind"], st["step"]]
                rows = [st["input_rows"], st["event_rows"]]
                w.writerow([*head, "stage", *rows, *[_fmt(st[k]) for k in CSV_FIELDS]])
                if "ceiling" in st:
                    c = st["ceiling"]
                    w.writerow([*head, "ceiling", *rows, *[_fmt(c[k]) for k in CSV_FIELDS]])


def _fmt(v):
    return round(v, 3) if isinstance(v, float) else v


if __name__ == "__main__":
    sys.exit(main())
