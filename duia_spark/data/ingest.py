"""Raw rows → typed `bronze.events` rows, with every bad row kept and explained.

`validate_raw_events` parses the canonical raw frame (see duia_spark/sources/raw.py) and attaches
the reasons a row is bad; `split_landed_and_rejected` separates the two
streams (and observes what the drop held, `read_tally`); `deduplicate_events` keeps one
row per (user_id, item_id, event_ts). DataFrame → DataFrame, no action of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from duia_spark.config import IngestConfig
from duia_spark.data.schema import (
    CONTEXT_COLUMNS,
    DURATIONS,
    EVENT_KEY,
    EVENTS_SCHEMA,
    FILES_REJECTED_SCHEMA,
    SIGNALS,
)


@dataclass(frozen=True)
class RejectedFile:
    """A raw file that cannot be read at all (truncated, corrupt), set aside whole."""

    path: str
    size_bytes: int
    reason: str
    drop_date: dt.date | None


_ID_PATTERN = r"^[A-Za-z0-9_\-.:]{1,128}$"
_INT_PATTERN = r"^-?[0-9]+(\.0+)?$"


def _as_long(c: Column) -> Column:
    """The integer a string spells ("12", "-3", "12.00"), or null (also when it overflows
    a long: ANSI mode's cast would fail the whole ingest on one such row instead of
    quarantining it).

    Plain digits take `try_cast` alone; only what it refuses is matched against the
    pattern (a whole-number decimal such as "12.0"). Every value through the regex first
    cost about twice the read of the drop (one day at 64x)."""
    return F.when(
        ~c.startswith("+"),
        F.coalesce(
            c.try_cast("long"),
            F.when(c.rlike(_INT_PATTERN), F.regexp_replace(c, r"\.0+$", "").try_cast("long")),
        ),
    )


def _blank_as_null(c: Column) -> Column:
    return F.when(c != "", c)


def _check(cond: Column, reason: str) -> Column:
    return F.when(cond, F.lit(reason))


def _row_checks(cfg: IngestConfig) -> list[tuple[str, Column]]:
    """(reason, condition) for every check a raw row must pass, in the order its reasons
    are listed; the conditions read `validate_raw_events`' parsed columns."""
    min_ts = int(
        dt.datetime.fromisoformat(cfg.min_event_date).replace(tzinfo=dt.UTC).timestamp() * 1000
    )
    max_ts = int(
        dt.datetime.fromisoformat(cfg.max_event_date).replace(tzinfo=dt.UTC).timestamp() * 1000
    )
    uid, iid, ts_ms = F.col("_t_user_id"), F.col("_t_item_id"), F.col("_ts_ms")
    local_date, declared_date = F.col("_local_date"), F.col("_declared_date")
    checks = [
        ("malformed_line", F.col("malformed")),
        ("missing_user_id", uid.isNull() | (uid == "")),
        ("invalid_user_id", uid.isNotNull() & (uid != "") & ~uid.rlike(_ID_PATTERN)),
        ("missing_item_id", iid.isNull() | (iid == "")),
        ("invalid_item_id", iid.isNotNull() & (iid != "") & ~iid.rlike(_ID_PATTERN)),
        ("invalid_timestamp", ts_ms.isNull()),
        ("absurd_timestamp", (ts_ms < min_ts) | (ts_ms >= max_ts)),
        ("invalid_date", F.col("date").isNotNull() & F.col("_row_date").isNull()),
        (
            "timestamp_outside_drop_date",
            declared_date.isNotNull() & ts_ms.isNotNull() & (local_date != declared_date),
        ),
    ]
    checks += [
        (f"invalid_signal:{s}", F.col(f"_t_{s}").isNotNull() & F.col(f"_p_{s}").isNull())
        for s in SIGNALS
    ]
    for d in DURATIONS:
        v, p = F.col(f"_t_{d}"), F.col(f"_p_{d}")
        checks += [
            (f"invalid_number:{d}", v.isNotNull() & p.isNull()),
            (f"negative_time:{d}", p < 0),
            (f"absurd_time:{d}", p > cfg.max_duration_ms),
        ]
    play, dur = F.col("_p_play_time_ms"), F.col("_p_duration_ms")
    checks.append(
        (
            "absurd_time:play_time_ms>duration",
            (dur > 0) & (play > dur * cfg.max_play_to_duration_ratio),
        )
    )
    return checks


def rejection_reasons(cfg: IngestConfig) -> list[str]:
    """Every value `validate_raw_events` can give a row's `first_reason`."""
    return [reason for reason, _ in _row_checks(cfg)]


def validate_raw_events(
    raw: DataFrame, cfg: IngestConfig, source: str, ingest_ts: dt.datetime
) -> DataFrame:
    """Typed event columns plus `reason` (the row's reasons joined by "; ", null when the
    row is good) and `first_reason` (the first of them, for the per-reason counts).

    The calendar day of an event (`event_date`) is its day in `cfg.source_timezone`,
    the same day the drop is named after; the timestamp itself is stored in UTC.

    Each raw value is trimmed and parsed once, in projections of its own, and the checks
    read the parsed columns: written as one expression per check, each check parsed the
    raw strings it reads again (`time_ms` alone in six places; one day at 16x took about
    4x as long).
    """
    # Trimmed raw strings, then the values parsed from them, then the dates from those.
    trimmed = raw.select(
        "*",
        *[F.trim(F.col(c)).alias(f"_t_{c}") for c in ("user_id", "item_id", "time_ms", "date")],
        *[F.trim(F.col(c)).alias(f"_t_{c}") for c in (*SIGNALS, *DURATIONS)],
    )
    parsed = trimmed.select(
        "*",
        _as_long(F.col("_t_time_ms")).alias("_ts_ms"),
        F.to_date(F.try_to_timestamp(F.col("_t_date"), F.lit("yyyyMMdd"))).alias("_row_date"),
        *[
            F.when(
                F.col(f"_t_{s}").isin("0", "1", "0.0", "1.0"),
                F.col(f"_t_{s}").cast("double").cast("int"),
            ).alias(f"_p_{s}")
            for s in SIGNALS
        ],
        *[_as_long(F.col(f"_t_{d}")).alias(f"_p_{d}") for d in DURATIONS],
    )
    dated = parsed.select(
        "*",
        F.timestamp_millis("_ts_ms").alias("_event_ts"),
        F.coalesce(F.col("drop_date"), F.col("_row_date")).alias("_declared_date"),
    ).select(
        "*",
        F.to_date(F.from_utc_timestamp("_event_ts", cfg.source_timezone)).alias("_local_date"),
    )
    declared_date, local_date = F.col("_declared_date"), F.col("_local_date")
    checks = [_check(cond, reason) for reason, cond in _row_checks(cfg)]
    return dated.select(
        F.col("_t_user_id").alias("user_id"),
        F.col("_t_item_id").alias("item_id"),
        F.col("_event_ts").alias("event_ts"),
        *[F.col(f"_p_{s}").alias(s) for s in SIGNALS],
        *[F.col(f"_p_{d}").alias(d) for d in DURATIONS],
        *[_blank_as_null(F.trim(F.col(c))).alias(c) for c in CONTEXT_COLUMNS],
        F.lit(source).alias("source"),
        F.col("source_file"),
        F.lit(ingest_ts).cast("timestamp").alias("ingest_ts"),
        F.coalesce(declared_date, local_date).alias("event_date"),
        F.col("raw_row"),
        F.coalesce(declared_date, local_date, F.lit(ingest_ts.date())).alias("drop_date"),
        # concat_ws skips the checks that passed (null): "" when every check passed.
        _blank_as_null(F.concat_ws("; ", *checks)).alias("reason"),
        F.coalesce(*checks).alias("first_reason"),
    )


@dataclass(frozen=True)
class IngestTally:
    """What one read of a drop held, gathered while its good rows were written."""

    rows: int
    rejected: int
    drop_dates: list[dt.date]  # the drop dates of every row read, good or bad


def split_landed_and_rejected(
    validated: DataFrame, tally: Observation
) -> tuple[DataFrame, DataFrame]:
    """(good rows in the bronze.events schema, bad rows in the quarantine schema).

    `tally` observes every row of `validated` on the first action that reads either
    stream (`read_tally` reads it back): the rows, the bad rows and the drop dates.
    Writing the good rows thus also counts the bad ones, and the drop is read a second
    time only when there are bad rows to quarantine.

    Both filters sit above the `observe` node, which Spark never pushes a filter through
    (it would change what is observed). Pushed below `validate_raw_events`' projections,
    a filter on `first_reason` is rewritten into every check inlined on the raw strings:
    each value parsed again per check, then once more for the rows kept (the good rows of
    one day at 16x took 9 s instead of 2 s).
    """
    reason = F.col("first_reason")
    checked = validated.observe(
        tally,
        F.count(F.lit(1)).alias("rows"),
        F.count(reason).alias("rejected"),
        # One string: an observed array reaches Python as an unconverted Java object.
        F.array_join(F.collect_set(F.col("drop_date").cast("string")), ",").alias("drop_dates"),
    )
    good = checked.where(reason.isNull()).select(*[f.name for f in EVENTS_SCHEMA.fields])
    bad = checked.where(reason.isNotNull()).select(
        "raw_row",
        "reason",
        "source",
        "source_file",
        "ingest_ts",
        "drop_date",
    )
    return good, bad


def read_tally(tally: Observation) -> IngestTally:
    """The tally `split_landed_and_rejected` observed (waits for the action that read it)."""
    got = tally.get
    dates = sorted(dt.date.fromisoformat(d) for d in got["drop_dates"].split(",") if d)
    return IngestTally(got["rows"], got["rejected"], dates)


def rows_per_first_reason(reasons: Sequence[str]) -> list[Column]:
    """Aggregates over quarantine rows, each named by its reason: the rows whose first
    reason (the head of `reason`) it is. `reasons` from `rejection_reasons`; 31 of them
    over every row read cost a tenth of a day's ingest, so they are taken over the bad
    rows alone."""
    first = F.substring_index(F.col("reason"), "; ", 1)
    return [F.count_if(first == r).alias(r) for r in reasons]


def rejected_files_frame(
    spark: SparkSession, files: Iterable[RejectedFile], source: str, ingest_ts: dt.datetime
) -> DataFrame:
    """`bronze.files_rejected` rows: one per raw file set aside whole."""
    rows = [(f.path, f.size_bytes, f.reason, source, ingest_ts, f.drop_date) for f in files]
    return spark.createDataFrame(rows, FILES_REJECTED_SCHEMA)


def deduplicate_events(events: DataFrame) -> DataFrame:
    """One row per (user_id, item_id, event_ts); the choice among copies is deterministic."""
    order = [
        F.col("source_file"),
        *[F.col(s).desc_nulls_last() for s in SIGNALS],
        F.col("play_time_ms").desc_nulls_last(),
    ]
    w = Window.partitionBy(*EVENT_KEY).orderBy(*order)
    return events.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def attributes(df: DataFrame, fixed: tuple[str, ...]) -> Column:
    """Every column of a dimension table beyond its typed ones, as a string map: the
    side features a source declares (`features.*`) are read from it by name."""
    extra = [c for c in df.columns if c not in fixed]
    if not extra:
        return F.create_map().cast("map<string,string>").alias("attributes")
    return F.map_from_arrays(
        F.array(*[F.lit(c) for c in extra]),
        F.array(*[_blank_as_null(F.trim(F.col(c).cast("string"))) for c in extra]),
    ).alias("attributes")


PROFILE_FIXED = ("user_id", "gender", "age_range", "register_days", "follow_user_num")
ITEM_FIXED = ("item_id", "category", "author_id", "duration_ms")


def normalise_user_profiles(users: DataFrame) -> DataFrame:
    """Profile snapshot rows with typed columns (the rest in `attributes`); rows without
    an id are dropped here because a profile is a dimension, not an event."""
    return (
        users.select(
            F.trim("user_id").alias("user_id"),
            F.col("gender").cast("string"),
            F.col("age_range").cast("string"),
            _as_long(F.trim("register_days")).cast("int").alias("register_days"),
            _as_long(F.trim("follow_user_num")).cast("int").alias("follow_user_num"),
            attributes(users, PROFILE_FIXED),
        )
        .where(F.col("user_id").isNotNull() & (F.col("user_id") != ""))
        .dropDuplicates(["user_id"])
    )


def normalise_item_features(items: DataFrame) -> DataFrame:
    return (
        items.select(
            F.trim("item_id").alias("item_id"),
            F.col("category").cast("string"),
            F.col("author_id").cast("string"),
            _as_long(F.trim("duration_ms")).alias("duration_ms"),
            attributes(items, ITEM_FIXED),
        )
        .where(F.col("item_id").isNotNull() & (F.col("item_id") != ""))
        .dropDuplicates(["item_id"])
    )
