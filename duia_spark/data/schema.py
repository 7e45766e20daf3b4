"""Column names and schemas of the tables every stage agrees on."""

from __future__ import annotations

from pyspark.sql import types as T

from duia_spark.model.config import SEGMENT_IDS

# Binary behaviour signals, in the order the model's tasks default to.
SIGNALS: tuple[str, ...] = ("click", "long_view", "like", "follow", "comment", "share", "hate")
# Millisecond measurements that travel with an exposure.
DURATIONS: tuple[str, ...] = ("play_time_ms", "duration_ms")
# Context of the exposure (null where the source lacks it): `tab`, the app surface.
CONTEXT_COLUMNS: tuple[str, ...] = ("tab",)

EVENT_KEY: tuple[str, ...] = ("user_id", "item_id", "event_ts")

EVENTS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("item_id", T.StringType(), False),
        T.StructField("event_ts", T.TimestampType(), False),
        *[T.StructField(s, T.IntegerType(), True) for s in SIGNALS],
        *[T.StructField(d, T.LongType(), True) for d in DURATIONS],
        *[T.StructField(c, T.StringType(), True) for c in CONTEXT_COLUMNS],
        T.StructField("source", T.StringType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("ingest_ts", T.TimestampType(), False),
        T.StructField("event_date", T.DateType(), False),
    ]
)

REJECTED_SCHEMA = T.StructType(
    [
        T.StructField("raw_row", T.StringType(), True),
        T.StructField("reason", T.StringType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("ingest_ts", T.TimestampType(), False),
        T.StructField("drop_date", T.DateType(), False),
    ]
)

# A raw file set aside whole (ingest.on_corrupt_file: quarantine): truncated, corrupt.
FILES_REJECTED_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType(), False),
        T.StructField("size_bytes", T.LongType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("ingest_ts", T.TimestampType(), False),
        T.StructField("drop_date", T.DateType(), False),
    ]
)

# Activity segments, as labels and as the integer ids the model sees.
# The ids are the model's batch contract (ModelConfig's module imports no Spark).
SEGMENT_INDEX: dict[str, int] = dict(SEGMENT_IDS)
SEGMENTS: tuple[str, ...] = tuple(sorted(SEGMENT_INDEX, key=SEGMENT_INDEX.get))
