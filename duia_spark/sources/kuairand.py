"""KuaiRand (Kuaishou's feed log): whole-file logs plus the official user / video tables,
renamed into the canonical raw frame."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from duia_spark.sources.daily_drops import read_parquet_drop
from duia_spark.sources.delimited import (
    list_files,
    read_delimited_file,
    read_header,
    union_all,
)
from duia_spark.sources.raw import KUAIRAND_LOG_COLUMNS, KUAIRAND_REQUIRED, RawDrop, RawInputError

# The official KuaiRand log columns; anything else in a file is named once and ignored.
KUAIRAND_OFFICIAL_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip


# A whole-file KuaiRand log carries `date`/`hourmin` in Beijing time, rounded: an event's
# day comes from its `time_ms` in ingest.source_timezone instead (conf/kuairand.yaml).
KUAIRAND_FILE_COLUMNS = {k: v for k, v in KUAIRAND_LOG_COLUMNS.items() if k != "date"}


# Profile columns the typed bronze tables keep by name; every other column of the
# official tables travels in `attributes` (features.* pick from it).
KUAIRAND_USER_RENAME = {"user_id": "user_id"}


KUAIRAND_ITEM_RENAME = {"video_id": "item_id", "video_duration": "duration_ms"}


def kuairand_log_files(path: Path) -> list[str]:
    """The log files of a KuaiRand path: the file itself, or in a folder every
    `log*.csv|tsv|txt` (the official CSV) and every `*.parquet` (the same log as Parquet)."""
    if path.is_file():
        return [str(path)]
    csvs = [f for f in list_files(path, (".csv", ".tsv", ".txt")) if Path(f).name.startswith("log")]
    return csvs + list_files(path, (".parquet",))


def _ignored_columns(spark: SparkSession, files: list[str]) -> list[str]:
    """Columns of the log files beyond the official ones (read from headers / footers)."""
    seen: dict[str, None] = {}
    for f in files:
        if f.endswith(".parquet"):
            names = spark.read.parquet(f).columns
        else:
            header = read_header(spark, f)
            names = [h.strip().strip('"') for h in header.split("\t" if "\t" in header else ",")]
        seen.update(dict.fromkeys(n for n in names if n not in KUAIRAND_OFFICIAL_COLUMNS))
    return list(seen)


def read_kuairand(spark: SparkSession, path: str) -> RawDrop:
    """KuaiRand logs plus `user_features*.csv` / `video_features_basic*.csv`.

    `path` is a folder or one log file. Logs are the official CSV (`log*.csv`, comma or
    tab separated) or the same columns as Parquet (`*.parquet`); any subset of the log
    columns beyond user_id/video_id/time_ms is read, columns that are not official are
    named once and ignored. An event's day is its `time_ms` in `ingest.source_timezone`
    (the file's `date` is Beijing time, rounded). Every column of the official user and
    video tables reaches bronze: the typed ones by name, the rest in `attributes`.
    """
    p = Path(path)
    if not p.exists():
        raise RawInputError(f"{path}: KuaiRand path does not exist")
    logs = kuairand_log_files(p)
    if not logs:
        raise RawInputError(f"{path}: no KuaiRand log files (log*.csv or *.parquet) found")
    ignored = _ignored_columns(spark, logs)
    if ignored:
        print(f"[ingest] KuaiRand: ignoring non-official log column(s): {', '.join(ignored)}")
    frames = []
    parquets = [f for f in logs if f.endswith(".parquet")]
    if parquets:
        frames.append(
            read_parquet_drop(
                spark, path, parquets, None, KUAIRAND_FILE_COLUMNS, KUAIRAND_OFFICIAL_COLUMNS
            )
        )
    for f in logs:
        if f.endswith(".parquet"):
            continue
        sep = "\t" if "\t" in read_header(spark, f) else ","
        frames.append(
            read_delimited_file(spark, f, sep, KUAIRAND_FILE_COLUMNS, KUAIRAND_REQUIRED, None)
        )
    folder = p if p.is_dir() else p.parent
    users = items = None
    ufiles = sorted(folder.glob("user_features*.csv"))
    if ufiles:
        u = spark.read.option("header", True).csv([str(f) for f in ufiles])
        users = u.select(
            *[F.col(c).alias(KUAIRAND_USER_RENAME.get(c, c)) for c in u.columns],
            *[
                F.lit(None).cast("string").alias(c)
                for c in ("gender", "age_range", "register_days", "follow_user_num")
                if c not in u.columns
            ],
        )
    vfiles = sorted(folder.glob("video_features_basic*.csv"))
    if vfiles:
        v = spark.read.option("header", True).csv([str(f) for f in vfiles])
        first_tag = F.split(F.col("tag"), ",").getItem(0) if "tag" in v.columns else F.lit(None)
        items = v.select(
            *[
                F.col(c).alias(KUAIRAND_ITEM_RENAME.get(c, c))
                for c in v.columns
                if c not in ("category",)
            ],
            first_tag.cast("string").alias("category"),
            *[
                F.lit(None).cast("string").alias(c)
                for c in ("author_id", "duration_ms")
                if c not in {KUAIRAND_ITEM_RENAME.get(x, x) for x in v.columns}
            ],
        )
        # video_duration is in ms, and may be written as a float ("87433.0")
        items = items.withColumn("duration_ms", F.regexp_replace("duration_ms", r"\.0+$", ""))
    return RawDrop(events=union_all(frames), users=users, items=items)
