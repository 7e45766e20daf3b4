"""`make demo`: generate a few weeks of logs, backfill features, run the nightly pipeline
over the last nights (stream clustering warm-starts night to night) and print the
per-segment report. Everything under .duia/demo/ of the home, $DUIA_HOME or else the
current directory (the shipped config `demo`, conf/demo.yaml)."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time

from duia_spark.cli import main as duia
from duia_spark.config import duia_home

DEMO_CONF = "demo"  # the shipped conf/demo.yaml: its state lives under <home>/.duia/demo


def _step(argv: list[str]) -> None:
    print(f"\n$ duia {' '.join(argv)}", flush=True)
    rc = duia([*argv, "--conf", DEMO_CONF])
    if rc != 0:
        sys.exit(rc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--days", type=int, default=12)
    p.add_argument("--nights", type=int, default=2, help="nightly runs over the last days")
    p.add_argument("--start-date", default="2026-01-01")
    p.add_argument("--keep", action="store_true", help="keep an existing demo folder")
    a = p.parse_args(argv)
    t0 = time.time()
    demo_dir = duia_home() / ".duia" / "demo"
    if demo_dir.exists() and not a.keep:
        shutil.rmtree(demo_dir)
    raw = str(demo_dir / "raw")
    start = dt.date.fromisoformat(a.start_date)
    last = start + dt.timedelta(days=a.days - 1)
    first_night = last - dt.timedelta(days=a.nights - 1)
    _step(
        [
            "generate",
            "--out",
            raw,
            "--users",
            str(a.users),
            "--items",
            str(a.items),
            "--days",
            str(a.days),
            "--start-date",
            a.start_date,
            "--seed",
            "1",
            "--dirty-rate",
            "0.001",
        ]
    )
    _step(
        [
            "ingest",
            "--path",
            raw,
            "--date",
            a.start_date,
            "--end-date",
            str(first_night - dt.timedelta(days=1)),
        ]
    )
    _step(
        ["backfill", "--date", a.start_date, "--end-date", str(first_night - dt.timedelta(days=1))]
    )
    for i in range(a.nights):
        night = first_night + dt.timedelta(days=i)
        _step(["nightly", "--date", str(night), "--raw", raw])
    print(f"\n== demo finished in {time.time() - t0:.0f}s ==")
    print("The last evaluation report is above (PLE vs PLE+DUIA per segment, simulated UVC/UDT).")
    print(f"Open the MLflow UI:  make mlflow-ui MLFLOW_DB={demo_dir / 'mlflow.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
