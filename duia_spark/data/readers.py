"""Readers that turn raw interaction logs into one canonical, all-string raw frame.

Each reader keeps the raw row text and its source file beside the parsed columns so
that ingest can quarantine a bad row exactly as it arrived. Missing signals become
null. A file whose header lacks a required column fails here, naming the file.

Canonical raw columns (all strings unless noted):
  user_id, item_id, time_ms, date (yyyymmdd or null), click, long_view, like, follow,
  comment, share, hate, play_time_ms, duration_ms, raw_row, source_file,
  malformed (bool: the line did not split into the header's fields),
  drop_date (date: the day the drop is named after, or null).
"""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.data.generator import ITEMS_FILE, LOG_DIR, USERS_FILE
from duia_spark.data.schema import CONTEXT_COLUMNS, DURATIONS, SIGNALS

CANONICAL_RAW = ["user_id", "item_id", "time_ms", "date", *SIGNALS, *DURATIONS, *CONTEXT_COLUMNS]

# KuaiRand's log columns → canonical names.
KUAIRAND_LOG_COLUMNS = {
    "user_id": "user_id",
    "video_id": "item_id",
    "time_ms": "time_ms",
    "date": "date",
    "is_click": "click",
    "long_view": "long_view",
    "is_like": "like",
    "is_follow": "follow",
    "is_comment": "comment",
    "is_forward": "share",
    "is_hate": "hate",
    "play_time_ms": "play_time_ms",
    "duration_ms": "duration_ms",
    "tab": "tab",
}
KUAIRAND_REQUIRED = ("user_id", "video_id", "time_ms")
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


BOM = "\ufeff"  # UTF-8 byte-order mark, as spreadsheet tools write it


class RawInputError(ValueError):
    """A raw input path or file cannot be read as the named source."""


@dataclass(frozen=True)
class RejectedFile:
    """A raw file that cannot be read at all (truncated, corrupt), set aside whole."""

    path: str
    size_bytes: int
    reason: str
    drop_date: dt.date | None


@dataclass(frozen=True)
class RawDrop:
    """What one ingest run reads: events plus optional profile snapshots, the drop days
    read, and the files set aside under `ingest.on_corrupt_file: quarantine`."""

    events: DataFrame
    users: DataFrame | None = None
    items: DataFrame | None = None
    drop_dates: tuple[dt.date, ...] = ()
    rejected_files: tuple[RejectedFile, ...] = ()


def _split_outside_quotes(sep: str) -> str:
    """Regex that splits on `sep` only where it is not inside double quotes."""
    return f'{sep}(?=(?:[^"]*"[^"]*")*[^"]*$)'


def split_fields(line: Column, sep: str) -> Column:
    """The fields of a delimited line, splitting on `sep` only outside double quotes.

    The quote-aware regex looks ahead to the end of the line at every separator (time
    quadratic in the line's length); a line without a `"` splits the same on every
    separator, so it takes a plain split.
    """
    sep = "\\t" if sep == "\t" else sep
    return F.when(line.contains('"'), F.split(line, _split_outside_quotes(sep))).otherwise(
        F.split(line, sep)
    )


def _unquote(c: Column) -> Column:
    c = F.trim(c)
    # Only a field that starts with a quote can be quoted: the rest skip the regex.
    c = F.when(c.startswith('"'), F.regexp_replace(c, r'^"(.*)"$', "$1")).otherwise(c)
    return F.when(c == "", None).otherwise(c)


def read_header(spark: SparkSession, file: str) -> str:
    """First line of a text file (local or any Hadoop filesystem; `.gz` is decompressed),
    without the UTF-8 byte-order mark spreadsheet tools write in front of it."""
    if "://" not in file or file.startswith("file:"):
        local = file.removeprefix("file:")
        opener = gzip.open if local.endswith(".gz") else open
        with opener(local, "rt", encoding="utf-8", errors="replace") as fh:
            line = fh.readline().rstrip("\r\n")
    else:
        row = spark.read.text(file).limit(1).first()
        line = row[0] if row else ""
    return line.removeprefix(BOM)


def read_delimited_file(
    spark: SparkSession,
    file: str,
    sep: str,
    rename: dict[str, str],
    required: Sequence[str],
    drop_date: dt.date | None,
    header_type_suffix: bool = False,
) -> DataFrame:
    """Read one delimited text file into the canonical raw frame.

    Lines are read as text and split here (not by Spark's CSV reader) because the CSV
    reader silently pads or truncates rows with the wrong number of fields; we want
    those rows quarantined as malformed, with their raw text.
    """
    header_line = read_header(spark, file)
    names = [h.strip().strip('"') for h in header_line.split(sep)]
    if header_type_suffix:  # RecBole's typed headers: `user_id:token`
        names = [n.split(":", 1)[0] for n in names]
    missing = [c for c in required if c not in names]
    if not header_line or missing:
        raise RawInputError(
            f"{file}: header {header_line!r} lacks required column(s) {', '.join(missing) or '(empty file)'}"
        )
    # Spark splits lines on \n, \r\n and \r alike; only the first line can carry a BOM.
    lines = spark.read.text(file).select(F.regexp_replace("value", f"^{BOM}", "").alias("raw_row"))
    lines = lines.where(F.col("raw_row") != F.lit(header_line)).where(F.trim("raw_row") != "")
    df = lines.withColumn("_parts", split_fields(F.col("raw_row"), sep))
    selected = {}
    for i, name in enumerate(names):
        if name in rename:
            selected[rename[name]] = _unquote(F.get(F.col("_parts"), i))
    out = df.select(
        *[selected.get(c, F.lit(None).cast("string")).alias(c) for c in CANONICAL_RAW],
        F.col("raw_row"),
        F.lit(file).alias("source_file"),
        (F.size("_parts") != len(names)).alias("malformed"),
        F.lit(drop_date).cast("date").alias("drop_date"),
    )
    return out


def _union(frames: Iterable[DataFrame]) -> DataFrame:
    frames = list(frames)
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith(("_", "."))
    )


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


def probe_raw_file(file: str) -> str | None:
    """Why a local raw file cannot be read, or None when it can.

    Run on every file of a drop before the one big read, so that a bad file is named
    instead of failing the whole union with a Java stack trace. Cheap: a Parquet file's
    footer (schema and row-group index, at the end of the file: what truncation loses) is
    parsed; a gzip'd file is decompressed through to its end-of-stream check (length and
    CRC), without keeping the text. Plain text needs no probe: its bad lines are
    quarantined row by row.
    """
    kind = "Parquet" if file.endswith(".parquet") else "gzip"
    try:
        if file.endswith(".parquet"):
            pq.read_metadata(file)
        elif file.endswith(".gz"):
            with gzip.open(file, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    except (OSError, EOFError, ValueError, zlib.error) as e:  # ArrowInvalid is a ValueError
        return f"corrupt or truncated {kind} file ({' '.join(str(e).split())})"
    return None


def _empty_raw_frame(spark: SparkSession) -> DataFrame:
    """The canonical raw frame with no rows: every file of the drops was set aside."""
    strings = [*CANONICAL_RAW, "raw_row", "source_file"]
    fields = [T.StructField(c, T.StringType()) for c in strings]
    fields += [
        T.StructField("malformed", T.BooleanType()),
        T.StructField("drop_date", T.DateType()),
    ]
    return spark.createDataFrame([], T.StructType(fields))


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
        csvs = _list_files(day_dir, (".csv", ".csv.gz", ".tsv"))
        parquets = _list_files(day_dir, (".parquet",))
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
            frames.append(_read_parquet_drop(spark, str(day_dir), readable, day))
    return RawDrop(
        events=_union(frames) if frames else _empty_raw_frame(spark),
        users=_read_profile_csv(spark, Path(root) / USERS_FILE, {"user_id": "user_id"}),
        items=_read_profile_csv(spark, Path(root) / ITEMS_FILE, {"video_id": "item_id"}),
        drop_dates=tuple(dates),
        rejected_files=tuple(rejected),
    )


def _read_parquet_drop(
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


def kuairand_log_files(path: Path) -> list[str]:
    """The log files of a KuaiRand path: the file itself, or in a folder every
    `log*.csv|tsv|txt` (the official CSV) and every `*.parquet` (the same log as Parquet)."""
    if path.is_file():
        return [str(path)]
    csvs = [
        f for f in _list_files(path, (".csv", ".tsv", ".txt")) if Path(f).name.startswith("log")
    ]
    return csvs + _list_files(path, (".parquet",))


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
            _read_parquet_drop(
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
    return RawDrop(events=_union(frames), users=users, items=items)


# MovieLens-1M codes age as the lower bound of a range (README of ML-1M); the ranges are
# passed on so the samples read their middle. "Under 18" has no lower bound: unknown.
ML1M_AGE_RANGES = {
    "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+",
}  # fmt: skip


def title_item_id(title: Column) -> Column:
    """ML-1M's RecBole export keys items by title ("Toy Story (1995)"), which is not a
    valid id; the id becomes "m" + the first 16 hex digits of the title's SHA-256:
    stable across runs and files, and the same in events and item features."""
    return F.concat(F.lit("m"), F.substring(F.sha2(F.col(title), 256), 1, 16))


def movielens_files(folder: Path) -> tuple[Path, Path | None, Path | None]:
    """The (.inter, .user, .item) files of a RecBole MovieLens export (`ml-100k`,
    `ml-1m`, ...) in `folder`; profiles and item features are optional."""
    inters = sorted(folder.glob("ml-*.inter"))
    if len(inters) != 1:
        found = ", ".join(p.name for p in inters) or "none"
        raise RawInputError(f"{folder}: expected one MovieLens file ml-*.inter, found {found}")
    stem = inters[0].with_suffix("")
    user, item = stem.with_suffix(".user"), stem.with_suffix(".item")
    return inters[0], user if user.exists() else None, item if item.exists() else None


def read_movielens(spark: SparkSession, path: str) -> RawDrop:
    """MovieLens in RecBole's layout (`ml-100k.inter|.user|.item`, or `ml-1m.*`; typed
    headers). ML-100K ages are years; ML-1M ages are range codes, read as the range, and
    its items are keyed by title, re-keyed by `title_item_id`.

    A rating is an exposure (click = 1); a rating >= 4 is a like and a long view.
    Other signals are not in the data and stay null.
    """
    inter, user_file, item_file = movielens_files(Path(path))
    ml1m = inter.name == "ml-1m.inter"
    rename = {"user_id": "user_id", "item_id": "item_id", "timestamp": "time_ms", "rating": "like"}
    ev = read_delimited_file(
        spark,
        str(inter),
        "\t",
        rename,
        ("user_id", "item_id", "rating", "timestamp"),
        None,
        header_type_suffix=True,
    )
    rating = _as_number(F.col("like"))
    seconds = _as_number(F.col("time_ms"))
    ev = ev.withColumns(
        {
            "time_ms": F.when(seconds.isNull(), F.col("time_ms")).otherwise(
                (seconds * 1000).cast("long").cast("string")
            ),
            "click": F.when(rating.isNotNull(), F.lit("1")).otherwise(F.col("like")),
            "like": F.when(rating.isNull(), F.col("like")).otherwise(
                F.when(rating >= 4, "1").otherwise("0")
            ),
        }
    ).withColumn("long_view", F.when(rating.isNull(), F.lit(None)).otherwise(F.col("like")))
    if ml1m:
        ev = ev.withColumn("item_id", title_item_id("item_id"))
    users = items = None
    if user_file is not None:
        u = _read_recbole_table(spark, user_file)
        age = F.trim(F.col("age"))
        if ml1m:
            codes = F.create_map(*[F.lit(x) for kv in ML1M_AGE_RANGES.items() for x in kv])
            age = codes[_as_number(age).cast("int").cast("string")]  # "25.0" -> "25"
        users = u.select(
            "user_id",
            F.col("gender").alias("gender"),
            age.alias("age_range"),
            F.lit(None).cast("string").alias("register_days"),
            F.lit(None).cast("string").alias("follow_user_num"),
        )
    if item_file is not None:
        i = _read_recbole_table(spark, item_file)
        genres = "class" if "class" in i.columns else "genre"
        items = i.select(
            title_item_id("item_id").alias("item_id") if ml1m else F.col("item_id"),
            F.split(F.col(genres), " ").getItem(0).alias("category"),
            F.lit(None).cast("string").alias("author_id"),
            F.lit(None).cast("string").alias("duration_ms"),
        )
    return RawDrop(events=ev, users=users, items=items)


def _as_number(c: Column) -> Column:
    """A numeric string as double, anything else null (never an ANSI cast error)."""
    return F.when(F.trim(c).rlike(r"^-?[0-9]+(\.[0-9]*)?$"), F.trim(c).cast("double"))


def _read_recbole_table(spark: SparkSession, file: Path) -> DataFrame:
    df = spark.read.option("header", True).option("sep", "\t").csv(str(file))
    return df.toDF(*[c.split(":", 1)[0] for c in df.columns])
