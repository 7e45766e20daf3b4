"""Production-style daily drops: `log/<YYYY-MM-DD>/` folders of CSV, TSV or Parquet
files, with optional user and item profile tables beside them (the synthetic world
writes this layout too)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from duia_spark.data.ingest import RejectedFile
from duia_spark.sources.delimited import (
    empty_raw_frame,
    list_files,
    probe_raw_file,
    read_delimited_file,
    union_all,
)
from duia_spark.sources.raw import (
    CANONICAL_RAW,
    KUAIRAND_LOG_COLUMNS,
    KUAIRAND_REQUIRED,
    RawDrop,
    RawInputError,
)
from duia_spark.sources.synthetic import ITEMS_FILE, LOG_DIR, USERS_FILE


def list_drop_dates(root: str) -> list[dt.date]:
    """The days for which a synthetic/production-style drop folder exists."""
    log = Path(root) / LOG_DIR
    if not log.is_dir():
        raise RawInputError(f"{root}: no '{LOG_DIR}/' folder of daily drops found")
    dates = []
    for p in sorted(log.iterdir()):
        try:
            dates.append(dt.date.fromisoformat(p.name))
        except ValueError:
            continue
    return dates


def read_daily_drops(
    spark: SparkSession, root: str, dates: Sequence[dt.date], on_corrupt_file: str = "fail"
) -> RawDrop:
    """Read `root/log/<YYYY-MM-DD>/{csv,parquet}/` drops (KuaiRand-shaped columns).

    A day with both CSV and Parquet copies is read from CSV (the copies are the same
    export; reading both would only create duplicates). Every file is probed first
    (`probe_raw_file`): a corrupt or truncated one fails the read naming the file, or with
    `on_corrupt_file="quarantine"` is left out and listed in `RawDrop.rejected_files`.
    """
    frames, rejected = [], []
    for day in dates:
        day_dir = Path(root) / LOG_DIR / day.isoformat()
        if not day_dir.is_dir():
            raise RawInputError(f"{day_dir}: no drop for {day.isoformat()}")
        csvs = list_files(day_dir, (".csv", ".csv.gz", ".tsv"))
        parquets = list_files(day_dir, (".parquet",))
        if not csvs and not parquets:
            raise RawInputError(f"{day_dir}: drop folder holds no .csv/.tsv/.parquet files")
        readable = []
        for f in csvs or parquets:
            reason = probe_raw_file(f)
            if reason is None:
                readable.append(f)
            elif on_corrupt_file == "quarantine":
                rejected.append(RejectedFile(f, Path(f).stat().st_size, reason, day))
            else:
                raise RawInputError(
                    f"{f}: {reason}; ingest.on_corrupt_file=quarantine sets it aside and "
                    "lands the rest of the drop"
                )
        if csvs:
            for f in readable:
                sep = "\t" if f.endswith(".tsv") else ","
                frames.append(
                    read_delimited_file(spark, f, sep, KUAIRAND_LOG_COLUMNS, KUAIRAND_REQUIRED, day)
                )
        elif readable:
            frames.append(read_parquet_drop(spark, str(day_dir), readable, day))
    return RawDrop(
        events=union_all(frames) if frames else empty_raw_frame(spark),
        users=_read_profile_csv(spark, Path(root) / USERS_FILE, {"user_id": "user_id"}),
        items=_read_profile_csv(spark, Path(root) / ITEMS_FILE, {"video_id": "item_id"}),
        drop_dates=tuple(dates),
        rejected_files=tuple(rejected),
    )


def read_parquet_drop(
    spark: SparkSession,
    folder: str,
    files: list[str],
    day: dt.date | None,
    rename: dict[str, str] = KUAIRAND_LOG_COLUMNS,
    keep: Sequence[str] | None = None,
) -> DataFrame:
    """Parquet log files → the canonical raw frame. `keep`: the columns read (and kept
    in `raw_row`); the rest of the file is ignored (None: every column)."""
    df = spark.read.parquet(*files)
    missing = [c for c in KUAIRAND_REQUIRED if c not in df.columns]
    if missing:
        raise RawInputError(f"{folder}: parquet files lack required column(s) {', '.join(missing)}")
    read = [c for c in df.columns if keep is None or c in keep]
    cols = {canon: F.col(src).cast("string") for src, canon in rename.items() if src in read}
    return df.select(
        *[cols.get(c, F.lit(None).cast("string")).alias(c) for c in CANONICAL_RAW],
        F.to_json(F.struct(*[F.col(c) for c in read])).alias("raw_row"),
        F.input_file_name().alias("source_file"),
        F.lit(False).alias("malformed"),
        F.lit(day).cast("date").alias("drop_date"),
    )


def _read_profile_csv(
    spark: SparkSession, file: Path, rename: dict[str, str], sep: str = ","
) -> DataFrame | None:
    if not file.exists():
        return None
    return (
        spark.read.option("header", True)
        .option("sep", sep)
        .csv(str(file))
        .withColumnsRenamed(rename)
    )
