"""Feature-job throughput at 1x and 4x data: `python bench/pipeline.py` (`make bench-pipeline`).

For each scale: generate synthetic logs (cached under --raw-dir), then in a fresh
process (one Spark driver per scale, so peak memory is per scale): ingest all days,
backfill the 7 days before the last day, run segment → sequences → item-stats → samples
for the last day (sequences incremental), and a sequences --full-rebuild of the last day
for comparison. Prints a table and writes bench/results/pipeline.md and .csv.

Events/s divides the events a stage reads (its input window in bronze.events) by its
wall time. Peak driver memory is VmHWM (peak RSS) of the driver JVM and of the Python
driver. In local mode the JVM also runs the tasks, so its peak includes executor work.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(raw: str, lake: str, master: str) -> dict:
    """Runs in its own process: one Spark driver for one scale."""
    from pyspark.sql import functions as F

    from duia_spark.cli import build_parser
    from duia_spark.config import load_config
    from duia_spark.data.activity import activity_window
    from duia_spark.data.item_stats import item_stats_window
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session
    from duia_spark.stages import load_stage

    cfg = load_config(overrides=[f"lakehouse.root={lake}", f"spark.master={master}"])
    spark = build_spark_session(cfg, "duia-bench-pipeline")
    lh = Lakehouse(spark, cfg)
    jvm_pid = spark.sparkContext._gateway.proc.pid

    def run(stage: str, *argv: str) -> float:
        args = build_parser().parse_args([stage, *argv])
        t0 = time.time()
        rc = load_stage(stage).run(cfg, args)
        if rc != 0:
            raise RuntimeError(f"{stage} {argv} exited {rc}")
        return time.time() - t0

    def events(first: dt.date, last: dt.date) -> int:
        return lh.read("events").where(F.col("event_date").between(first, last)).count()

    rows = []
    t_ingest = run("ingest", "--source", "synthetic", "--path", raw)
    dates = sorted(r[0] for r in lh.read("events").select("event_date").distinct().collect())
    total = events(dates[0], dates[-1])
    rows.append(("ingest (all days)", total, t_ingest))
    last = dates[-1]
    first_bf, last_bf = last - dt.timedelta(days=7), last - dt.timedelta(days=1)
    t = run("backfill", "--date", str(first_bf), "--end-date", str(last_bf))
    rows.append(("backfill 7 days (4 stages)", events(first_bf, last_bf), t))
    a0, _ = activity_window(last, cfg.activity)
    s0, s1 = item_stats_window(last, cfg.item_stats)
    day_before = last - dt.timedelta(days=1)
    rows.append(("segment", events(a0, last), run("segment", "--date", str(last))))
    rows.append(
        (
            "sequences (incremental)",
            events(day_before, day_before),
            run("sequences", "--date", str(last)),
        )
    )
    rows.append(("item-stats", events(s0, s1), run("item-stats", "--date", str(last))))
    rows.append(("samples", events(last, last), run("samples", "--date", str(last))))
    rows.append(
        (
            "sequences (full rebuild)",
            events(dates[0], day_before),
            run("sequences", "--date", str(last), "--full-rebuild"),
        )
    )
    out = {
        "events_total": total,
        "days": len(dates),
        "stages": [{"stage": s, "input_events": n, "wall_s": round(w, 2)} for s, n, w in rows],
        "jvm_peak_mb": round(_vm_hwm_mb(jvm_pid), 1),
        "python_peak_mb": round(_vm_hwm_mb(os.getpid()), 1),
    }
    spark.stop()
    return out


def _generate(raw: Path, users: int, items: int, days: int, seed: int) -> float:
    if (raw / "_manifest.json").exists():
        print(f"[bench] reusing generated logs in {raw}")
        return float("nan")
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-m", "duia_spark.cli", "generate", "--out", str(raw), "--users", str(users),
         "--items", str(items), "--days", str(days), "--seed", str(seed), "--formats", "parquet"],
        check=True,
    )  # fmt: skip
    return time.time() - t0


def _verdict(results: dict, lo: int, hi: int) -> list[str]:
    """Goal lines: hi-x data in at most 1.1 * (hi/lo) x the time; flat driver memory."""
    t_lo = sum(st["wall_s"] for st in results[lo]["stages"])
    t_hi = sum(st["wall_s"] for st in results[hi]["stages"])
    limit = 1.1 * hi / lo
    ratio = t_hi / t_lo
    py = results[hi]["python_peak_mb"] / results[lo]["python_peak_mb"]
    jvm = results[hi]["jvm_peak_mb"] / results[lo]["jvm_peak_mb"]
    return [
        f"Goal: {hi}x data costs at most {limit:.1f}x the time of {lo}x — "
        f"{'met' if ratio <= limit else '**missed**'}: all stages together took {t_hi:,.0f} s vs "
        f"{t_lo:,.0f} s = {ratio:.2f}x.",
        f"Goal: driver memory does not grow with data — Python driver {py:.2f}x, driver JVM "
        f"{jvm:.2f}x from {lo}x to {hi}x (in local mode the JVM also runs the executors' "
        "tasks, so its peak includes task memory, bounded by spark.driver.memory).",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="1,4", help="comma list of data multipliers")
    p.add_argument(
        "--users", type=int, default=8_000, help="users at 1x (~0.6M events over 28 days)"
    )
    p.add_argument("--items", type=int, default=2_000, help="items at 1x")
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--raw-dir", default="/tmp/duia-bench", help="generated logs are cached here")
    p.add_argument("--worker", nargs=2, metavar=("RAW", "LAKE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("BENCH_RESULT " + json.dumps(worker(*args.worker, args.master)))
        return 0

    base = Path(args.raw_dir)
    results = {}
    for scale in [int(s) for s in args.scales.split(",")]:
        raw = base / f"raw-{scale}x"
        lake = base / f"lake-{scale}x"
        gen_s = _generate(raw, args.users * scale, args.items * scale, args.days, args.seed)
        subprocess.run(["rm", "-rf", str(lake)], check=True)
        print(f"[bench] {scale}x: running the feature jobs (lakehouse {lake})")
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(raw), str(lake), "--master", args.master],
            capture_output=True, text=True,
        )  # fmt: skip
        line = [x for x in proc.stdout.splitlines() if x.startswith("BENCH_RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
            return 1
        results[scale] = json.loads(line[0].split(" ", 1)[1]) | {"generate_s": gen_s}

    scales = sorted(results)
    lo, hi = scales[0], scales[-1]
    header = ["stage"] + [h for s in scales for h in (f"{s}x wall s", f"{s}x events/s")]
    header.append(f"time {hi}x/{lo}x")
    table = []
    for i, st in enumerate(results[lo]["stages"]):
        row = [st["stage"]]
        for s in scales:
            r = results[s]["stages"][i]
            row += [f"{r['wall_s']:.1f}", f"{r['input_events'] / max(r['wall_s'], 1e-9):,.0f}"]
        row.append(f"{results[hi]['stages'][i]['wall_s'] / results[lo]['stages'][i]['wall_s']:.2f}")
        table.append(row)
    lines = [
        "# Feature-job benchmark (`python bench/pipeline.py`)",
        "",
        f"Spark master {args.master}, {os.cpu_count()} CPU cores, {args.days} days of synthetic logs. "
        + ", ".join(
            f"{s}x = {results[s]['events_total']:,d} events ({args.users * s:,d} users, {args.items * s:,d} items)"
            for s in scales
        ),
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *["| " + " | ".join(r) + " |" for r in table],
        "",
        "| peak driver memory (VmHWM) | " + " | ".join(f"{s}x" for s in scales) + " |",
        "| --- | " + " | ".join("---" for _ in scales) + " |",
        "| driver JVM (MB) | "
        + " | ".join(f"{results[s]['jvm_peak_mb']:,.0f}" for s in scales)
        + " |",
        "| Python driver (MB) | "
        + " | ".join(f"{results[s]['python_peak_mb']:,.0f}" for s in scales)
        + " |",
        "",
        *_verdict(results, lo, hi),
        "",
        "Events/s = events the stage reads from bronze.events (its input window) / wall time. "
        "The backfill covers the 7 days before the last day; the last day's stages then run "
        "with sequences advancing incrementally; the full rebuild is shown for comparison.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.md").write_text(text)
    with open(RESULTS / "pipeline.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "scale",
                "events_total",
                "stage",
                "input_events",
                "wall_s",
                "events_per_s",
                "jvm_peak_mb",
                "python_peak_mb",
            ]
        )
        for s in scales:
            r = results[s]
            for st in r["stages"]:
                w.writerow([s, r["events_total"], st["stage"], st["input_events"], st["wall_s"],
                            round(st["input_events"] / max(st["wall_s"], 1e-9)), r["jvm_peak_mb"], r["python_peak_mb"]])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
