"""Benchmark of re-sending an unchanged profile table: `Lakehouse.upsert` vs a plain MERGE.

    python bench/upsert.py                  # 128,000 profiles; writes bench/results/upsert.md
    python bench/upsert.py --rows 10000     # smaller, for a smoke test (nothing written)

Every night's drop carries the whole user (and item) table, mostly unchanged. A Delta
MERGE that updates every match rewrites every file a matched row lives in, changed or
not; `Lakehouse.upsert` first drops the rows already in the table as they are (a null-
safe anti-join on every column), so an unchanged table commits nothing. Both are timed
on the same table of `--rows` profiles (user_id, 20 integer columns, a string column
with nulls), alternated, after one warm-up run each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=128_000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from duia_spark.config import load_config
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session

    cfg = load_config(overrides=[f"lakehouse.root={tempfile.mkdtemp(prefix='duia-upsert-')}"])
    spark = build_spark_session(cfg, "bench-upsert")
    lake = Lakehouse(spark, cfg)
    profiles = spark.range(a.rows).select(
        F.concat(F.lit("u"), F.col("id").cast("string")).alias("user_id"),
        *[(F.hash("id", F.lit(i)) % 1000).alias(f"f{i}") for i in range(20)],
        F.when(F.col("id") % 7 == 0, None).otherwise(F.lit("x")).alias("g"),
    )
    profiles.write.format("delta").mode("overwrite").save(lake.path("user_profiles"))

    def plain_merge() -> None:
        table = DeltaTable.forPath(spark, lake.path("user_profiles"))
        (
            table.alias("t")
            .merge(profiles.alias("s"), "t.`user_id` = s.`user_id`")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    def upsert() -> None:
        lake.upsert(profiles, "user_profiles", ["user_id"])

    times: dict[str, list[float]] = {
        "plain MERGE (every match updated)": [],
        "Lakehouse.upsert": [],
    }
    runs = list(zip(times, (plain_merge, upsert), strict=False))
    for repeat in range(a.repeats + 1):
        for name, fn in runs:
            t0 = time.time()
            fn()
            if repeat:  # the first round warms the JVM and the caches
                times[name].append(time.time() - t0)
    lines = [
        "# Re-sending an unchanged profile table (`python bench/upsert.py`)",
        "",
        f"`python bench/upsert.py --rows {a.rows}` — {time.strftime('%Y-%m-%d')}, Spark "
        f"master {cfg.spark.master}, {a.repeats} alternated runs each after a warm-up.",
        "",
        "| write | rows | min s | max s |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {a.rows:,} | {min(v):.2f} | {max(v):.2f} |" for k, v in times.items()),
    ]
    print("\n".join(lines))
    if a.rows == 128_000:
        out = ROOT / "bench" / "results" / "upsert.md"
        write_result(out, "\n".join(lines))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
