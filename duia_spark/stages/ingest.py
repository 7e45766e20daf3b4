"""`duia ingest`: raw drops → bronze.events (+ bronze.events_rejected, profiles)."""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from duia_spark.config import Config, ConfigError
from duia_spark.data.implicit_exposures import IMPLICIT_SOURCE_SUFFIX, sample_unrated_exposures
from duia_spark.data.ingest import (
    IngestTally,
    deduplicate_events,
    normalise_item_features,
    normalise_user_profiles,
    read_tally,
    rejected_files_frame,
    rejection_reasons,
    rows_per_first_reason,
    split_landed_and_rejected,
    validate_raw_events,
)
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.sources.daily_drops import list_drop_dates, read_daily_drops
from duia_spark.sources.kuairand import read_kuairand
from duia_spark.sources.movielens import read_movielens
from duia_spark.sources.raw import RawDrop, RawInputError
from duia_spark.stale_days import record_stale

NAME = "ingest"
HELP = "ingest raw interaction logs into bronze.events (bad rows → bronze.events_rejected)"
SOURCES = ("synthetic", "kuairand", "movielens")
ON_CORRUPT_FILE = ("fail", "quarantine")
# The day-partitioned tables built from the events, with their day column.
FEATURE_TABLES = {
    "user_activity": "activity_date",
    "user_sequences": "as_of_date",
    "item_stats": "stats_date",
    "samples": "sample_date",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=SOURCES, default="synthetic", help="raw data layout")
    p.add_argument("--path", required=True, help="raw data folder (or KuaiRand log file)")
    p.add_argument(
        "--end-date",
        type=dt.date.fromisoformat,
        help="with --date, ingest the daily drops from --date to this date",
    )


@dataclass(frozen=True)
class IngestRequest:
    """What one ingest reads: a source's raw folder, and the drop days (None: all found)."""

    source: str
    path: str
    first: dt.date | None = None
    last: dt.date | None = None  # None: `first` alone

    @property
    def days(self) -> tuple[dt.date, dt.date] | None:
        return None if self.first is None else (self.first, self.last or self.first)


def _read(spark, request: IngestRequest, cfg: Config) -> RawDrop | None:
    if request.source == "synthetic":
        available = list_drop_dates(request.path)
        if request.days:
            first, last = request.days
            wanted = [d for d in available if first <= d <= last]
            if not wanted:
                msg = f"[ingest] no drop under {request.path}/log/ for {first}..{last}"
                if cfg.ingest.on_missing_drop == "skip":
                    print(msg + " — skipping (ingest.on_missing_drop=skip)")
                    return None
                raise RawInputError(msg)
        else:
            wanted = available
        print(
            f"[ingest] reading {len(wanted)} daily drop(s) {wanted[0]}..{wanted[-1]} "
            f"from {request.path}"
        )
        return read_daily_drops(spark, request.path, wanted, cfg.ingest.on_corrupt_file)
    if request.source == "kuairand":
        return read_kuairand(spark, request.path)
    return read_movielens(spark, request.path)


def _record_rejected_files(
    lake: Lakehouse, drop: RawDrop, source: str, ingest_ts: dt.datetime
) -> None:
    """Replace the drop days' rows of bronze.files_rejected (a re-ingest after a file was
    fixed clears its row)."""
    if drop.rejected_files or (drop.drop_dates and lake.exists("files_rejected")):
        rows = rejected_files_frame(lake.spark, drop.rejected_files, source, ingest_ts)
        lake.replace_partitions(
            rows, "files_rejected", "drop_date", drop.drop_dates, f"source = '{source}'"
        )


def _print_rejected_files(lake: Lakehouse, drop: RawDrop) -> None:
    if drop.rejected_files:
        n = len(drop.rejected_files)
        print(f"[ingest]   files set aside {n:>8,d}  → {lake.path('files_rejected')}")
        for f in drop.rejected_files:
            print(f"[ingest]     {f.path}: {f.reason}")


def _rejected_rows_change(lake: Lakehouse, tally: IngestTally, predicate: str) -> bool:
    """False when this read rejected nothing and its dates hold no rejected rows of the
    source from an earlier read: the write would leave events_rejected as it is."""
    if tally.rejected or not lake.exists("events_rejected"):
        return True
    dates = tally.drop_dates
    earlier = lake.read("events_rejected").where(F.col("drop_date").isin(dates)).where(predicate)
    return not earlier.isEmpty()


def _no_rows(lake: Lakehouse, drop: RawDrop, request: IngestRequest) -> None:
    print(f"[ingest] {request.path}: no rows to ingest")
    _print_rejected_files(lake, drop)


@dataclass(frozen=True)
class _Landed:
    """What landing the good rows wrote and observed on the way."""

    tally: IngestTally
    landed: int
    unrated: int
    bad: DataFrame  # the drop's rejected rows, not yet read


def _land_events(lake: Lakehouse, cfg: Config, source: str, validated: DataFrame) -> _Landed:
    """Deduplicate the good rows and replace the events days they turn up.

    One read of the drop lands the good rows and, observed on the way, counts every row
    per first reason and lists the drop dates; the quarantine write reads the drop
    again, and only when there are bad rows now or from an earlier read. Not cached:
    caching every column of every row on local disk took longer than reading the drop
    again (one day at 16x, bench/pipeline.py), and a month-long drop cached in memory
    ran a 4 GB driver out of heap. The events table's days are replaced as the good rows
    turn them up (a day whose rows are all bad keeps what it held).
    """
    observation = Observation(f"ingest-{uuid.uuid4().hex[:12]}")
    good, bad = split_landed_and_rejected(validated, observation)
    landed = deduplicate_events(good)
    per_rating = cfg.ingest.movielens_unrated_per_rating
    if source == "movielens" and per_rating > 0:
        landed = landed.unionByName(
            sample_unrated_exposures(landed, per_rating, cfg.ingest.unrated_seed)
        )
        print(f"[ingest] adding up to {per_rating} unrated exposure(s) per rating (click 0)")
    counts = lake.replace_partitions_written(
        landed,
        "events",
        "event_date",
        summary=[
            F.count(F.lit(1)).alias("all"),
            F.count_if(F.col("source_file").endswith(IMPLICIT_SOURCE_SUFFIX)).alias("unrated"),
        ],
    )
    unrated = counts["unrated"]
    return _Landed(read_tally(observation), counts["all"] - unrated, unrated, bad)


def _quarantine_rows(lake: Lakehouse, cfg: Config, source: str, landed: _Landed) -> dict[str, int]:
    """Replace the drop days' rows of events_rejected; the rows per reason (invalid
    signals counted together)."""
    tally, bad = landed.tally, landed.bad
    rejected_here = f"source = '{source}'"
    per_reason: dict[str, int] = {}
    if _rejected_rows_change(lake, tally, rejected_here):
        summary = []
        if tally.rejected:
            summary = rows_per_first_reason(rejection_reasons(cfg.ingest))
        else:
            bad = bad.limit(0)  # it only clears earlier rows: no need to read the drop again
        got = lake.replace_partitions(
            bad, "events_rejected", "drop_date", tally.drop_dates, rejected_here, summary=summary
        )
        per_reason = {reason: n for reason, n in got.items() if n}
    rejected: dict[str, int] = {}
    for reason, n in per_reason.items():
        key = reason.split(":")[0] if reason.startswith("invalid_signal") else reason
        rejected[key] = rejected.get(key, 0) + n
    return rejected


def _report(
    lake: Lakehouse, drop: RawDrop, source: str, landed: _Landed, rejected: dict[str, int]
) -> None:
    tally, dates = landed.tally, landed.tally.drop_dates
    read, n_good = tally.rows, tally.rows - tally.rejected
    print(f"[ingest] source={source} dates={dates[0]}..{dates[-1]} ({len(dates)} day(s))")
    print(f"[ingest]   read        {read:>12,d}")
    print(f"[ingest]   landed      {landed.landed:>12,d}  → {lake.path('events')}")
    print(
        f"[ingest]   duplicates  {n_good - landed.landed:>12,d}  "
        "(same user_id, item_id, event_ts; one kept)"
    )
    if landed.unrated:
        print(f"[ingest]   + unrated   {landed.unrated:>12,d}  sampled unrated exposures (click 0)")
    print(f"[ingest]   rejected    {read - n_good:>12,d}  → {lake.path('events_rejected')}")
    for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1]):
        print(f"[ingest]     {reason:<40s} {n:>10,d}")
    _print_rejected_files(lake, drop)


def stale_days(lake: Lakehouse, first_landed: dt.date) -> tuple[dt.date, dt.date] | None:
    """The days whose features were built before events of `first_landed` (or later)
    landed, as (first, last); None when no feature day that late exists yet.

    The features of day X read the events up to X (the activity window, item stats, the
    samples of X) or before it (sequences as of X): every built day from `first_landed`
    on may miss the late rows. Reads the feature tables' day columns only."""
    latest = [
        lake.read(table).agg(F.max(day_col)).first()[0]
        for table, day_col in FEATURE_TABLES.items()
        if lake.exists(table)
    ]
    last = max((d for d in latest if d is not None), default=None)
    return None if last is None or last < first_landed else (first_landed, last)


def _report_stale_days(lake: Lakehouse, landed: _Landed) -> None:
    """Name the feature days this drop made stale and record them (ops.stale_days): the
    next `duia nightly` rebuilds them before its own day."""
    stale = stale_days(lake, min(landed.tally.drop_dates))
    if stale is None:
        return
    first, last = stale
    record_stale(lake, first, last)
    print(
        f"[ingest] {first}..{last}: features built before this drop landed (segment, "
        "sequences, item-stats, samples) do not see its rows. The next `duia nightly` "
        "rebuilds them first; to rebuild now, with this command's --conf/--set: "
        f"duia backfill --date {first} --end-date {last}"
    )


def ingest(cfg: Config, request: IngestRequest) -> int:
    """Land a source's raw drop in bronze.events; bad rows go to bronze.events_rejected
    with their reason, unreadable files to bronze.files_rejected, profiles upserted."""
    if cfg.ingest.on_corrupt_file not in ON_CORRUPT_FILE:
        raise ConfigError(
            f"ingest.on_corrupt_file: expected one of {', '.join(ON_CORRUPT_FILE)}, "
            f"got {cfg.ingest.on_corrupt_file!r}"
        )
    spark = build_spark_session(cfg, "duia-ingest")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    drop = _read(spark, request, cfg)
    if drop is None:
        return 0
    ingest_ts = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    _record_rejected_files(lake, drop, request.source, ingest_ts)
    validated = validate_raw_events(drop.events, cfg.ingest, request.source, ingest_ts)
    if request.source != "synthetic" and request.days:
        # Whole-file sources: keep only the requested dates (bad rows keep their drop date).
        validated = validated.where(F.col("drop_date").between(*request.days))
    if not lake.exists("events") and validated.isEmpty():
        # Landing would create an empty events table; a first drop without a row leaves
        # the lakehouse as it was (an existing table's days are kept anyway).
        _no_rows(lake, drop, request)
        return 0
    landed = _land_events(lake, cfg, request.source, validated)
    if landed.tally.rows == 0:
        _no_rows(lake, drop, request)
        return 0
    rejected = _quarantine_rows(lake, cfg, request.source, landed)
    if drop.users is not None:
        lake.upsert(normalise_user_profiles(drop.users), "user_profiles", ["user_id"])
    if drop.items is not None:
        lake.upsert(normalise_item_features(drop.items), "item_features", ["item_id"])
    _report(lake, drop, request.source, landed, rejected)
    _report_stale_days(lake, landed)
    print(f"[ingest] done in {time.time() - t0:.1f}s")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return ingest(cfg, IngestRequest(args.source, args.path, args.date, args.end_date))
