"""The canonical raw frame every source adapter produces, and what one read returns.

Canonical raw columns (all strings unless noted):
  user_id, item_id, time_ms, date (yyyymmdd or null), click, long_view, like, follow,
  comment, share, hate, play_time_ms, duration_ms, raw_row, source_file,
  malformed (bool: the line did not split into the header's fields),
  drop_date (date: the day the drop is named after, or null).

Each adapter keeps the raw row text and its source file beside the parsed columns so
that ingest can quarantine a bad row exactly as it arrived. Missing signals become
null. A file whose header lacks a required column fails in the adapter, naming the file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame

from duia_spark.data.ingest import RejectedFile
from duia_spark.data.schema import CONTEXT_COLUMNS, DURATIONS, SIGNALS

CANONICAL_RAW = ["user_id", "item_id", "time_ms", "date", *SIGNALS, *DURATIONS, *CONTEXT_COLUMNS]


# The raw log columns → canonical names. KuaiRand's names, which daily drops use too.
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


BOM = "\ufeff"  # UTF-8 byte-order mark, as spreadsheet tools write it


class RawInputError(ValueError):
    """A raw input path or file cannot be read as the named source."""


@dataclass(frozen=True)
class RawDrop:
    """What one ingest run reads: events plus optional profile snapshots, the drop days
    read, and the files set aside under `ingest.on_corrupt_file: quarantine`."""

    events: DataFrame
    users: DataFrame | None = None
    items: DataFrame | None = None
    drop_dates: tuple[dt.date, ...] = ()
    rejected_files: tuple[RejectedFile, ...] = ()
