"""Benchmark of `spark.sql.codegen.hugeMethodLimit` on the samples assembly.

    python bench/codegen_limit.py --lake DIR --date D   # a kept bench lakehouse
    python bench/pipeline.py --scales 16 --night-history-days 7 --history-days 0 \\
        --keep-lake --raw-dir DIR                       # makes one: DIR/lake-16x, D its night

The session sets the limit to 8000: the JVM never JIT-compiles a method longer than
8,000 bytes of bytecode, and Spark only gives up whole-stage code generation past its
default of 65,535, so a wide projection in between runs interpreted. This times the
assembly of D's gold.samples rows (every join and column of the `samples` stage, written
to the `noop` sink) under both limits, alternated, after one warm-up run each. Writes
bench/results/codegen_limit.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIMITS = ("65535", "8000")  # Spark's default, the session's


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lake", required=True, help="a lakehouse root with D's feature partitions")
    p.add_argument("--date", required=True, type=dt.date.fromisoformat, help="D")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--results-name", default="codegen_limit")
    a = p.parse_args()

    from pyspark.sql import functions as F

    from duia_spark.config import load_config
    from duia_spark.data.samples import DayFeatures, assemble_samples
    from duia_spark.data.vocabulary import VOCABULARY_SCHEMA
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session
    from duia_spark.stages.day_inputs import events_between

    cfg = load_config(overrides=[f"lakehouse.root={a.lake}"])
    spark = build_spark_session(cfg, "bench-codegen-limit")
    lake = Lakehouse(spark, cfg)
    day = a.date

    def optional(table: str):
        return lake.read(table) if lake.exists(table) else None

    def assemble() -> None:
        day_features = DayFeatures(
            sample_date=day,
            events=events_between(lake, day, day),
            activity=lake.read("user_activity"),
            sequences=lake.read("user_sequences").where(F.col("as_of_date") == day),
            item_stats=lake.read("item_stats"),
            vocabulary=lake.read_or_empty("vocabulary", VOCABULARY_SCHEMA),
            user_profiles=optional("user_profiles"),
            item_features=optional("item_features"),
            sequence_cfg=cfg.sequences,
            stats_cfg=cfg.item_stats,
            features=cfg.features,
        )
        samples = assemble_samples(day_features)
        samples.write.format("noop").mode("overwrite").save()

    rows = events_between(lake, day, day).count()
    times: dict[str, list[float]] = {limit: [] for limit in LIMITS}
    for repeat in range(a.repeats + 1):
        for limit in LIMITS:
            spark.conf.set("spark.sql.codegen.hugeMethodLimit", limit)
            t0 = time.time()
            assemble()
            if repeat:  # the first round warms the JVM and the caches
                times[limit].append(time.time() - t0)
            print(f"[bench] hugeMethodLimit {limit}: {time.time() - t0:.1f} s", flush=True)
    lines = [
        "# The samples assembly under two code-generation limits (`python bench/codegen_limit.py`)",
        "",
        f"`python bench/codegen_limit.py --lake {a.lake} --date {day}` — "
        f"{time.strftime('%Y-%m-%d')}, Spark master {cfg.spark.master}, {rows:,} exposures "
        f"on {day}, {a.repeats} alternated runs each after a warm-up, written to `noop`.",
        "",
        "| spark.sql.codegen.hugeMethodLimit | min s | max s |",
        "|---|---:|---:|",
        *(f"| {k} | {min(v):.1f} | {max(v):.1f} |" for k, v in times.items()),
    ]
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / f"{a.results_name}.md"
    write_result(out, "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
