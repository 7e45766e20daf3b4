"""Shared I/O edge of the feature stages: the run date, one day's events, and what to do
when that day has no events (`sequences.on_missing_events`) or an upstream partition is
missing. Messages, not stack traces."""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from duia_spark.config import Config, ConfigError
from duia_spark.lakehouse import Lakehouse

MISSING_EVENT_POLICIES = ("empty", "skip")


class MissingInputError(RuntimeError):
    """An upstream table or partition a stage needs has not been written."""


def run_date(args: argparse.Namespace, stage: str) -> dt.date:
    if getattr(args, "date", None) is None:
        raise ConfigError(f"duia {stage} needs --date YYYY-MM-DD (the run date D)")
    return args.date


def events_between(lake: Lakehouse, first: dt.date, last: dt.date) -> DataFrame:
    """bronze.events rows with first <= event_date <= last (partition-pruned)."""
    return lake.read("events").where(F.col("event_date").between(first, last))


def proceed_without_events(cfg: Config, lake: Lakehouse, stage: str, day: dt.date) -> bool:
    """False when `day` has no events and the policy is "skip" (the caller writes nothing).

    With "empty" the caller goes on: features as of the start of `day` only use earlier
    days, and the samples of `day` are an empty partition.
    """
    policy = cfg.sequences.on_missing_events
    if policy not in MISSING_EVENT_POLICIES:
        raise ConfigError(
            f"sequences.on_missing_events: expected one of {MISSING_EVENT_POLICIES}, got {policy!r}"
        )
    if not events_between(lake, day, day).isEmpty():
        return True
    msg = f"[{stage}] no events on {day} in bronze.events ({lake.path('events')})"
    if policy == "skip":
        print(f"{msg} — skipping, nothing written (sequences.on_missing_events=skip)")
        return False
    print(f"{msg} — going on (sequences.on_missing_events=empty)")
    return True


def previous_partition(
    lake: Lakehouse,
    table: str,
    column: str,
    day: dt.date,
    stale: Column | None = None,
    full_rebuild: bool = False,
) -> tuple[DataFrame | None, str | None]:
    """(`table` as of `day` - 1, None) for a stage that advances yesterday's result, or
    (None, why) when the stage must recount: `full_rebuild` (--full-rebuild), no table,
    no partition while older events exist (a gap, or the first run), or rows matching
    `stale` (written under another config)."""
    if full_rebuild:
        return None, "--full-rebuild"
    prev_day = day - dt.timedelta(days=1)
    if not lake.exists(table):
        return None, f"no {table} table yet"
    prev = lake.read(table).where(F.col(column) == F.lit(prev_day))
    if prev.isEmpty():
        older = lake.read("events").where(F.col("event_date") < F.lit(prev_day))
        if older.isEmpty():  # nothing happened before D-1: the empty partition is right
            return prev, None
        return None, f"no {table} as of {prev_day}"
    if stale is not None and not prev.where(stale).isEmpty():
        return None, f"{table} as of {prev_day} was written under another config"
    return prev, None


def add_full_rebuild_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--full-rebuild",
        action="store_true",
        help=f"recount {what} instead of advancing the result of D-1 (after re-ingesting "
        "an old day or changing the stage's config)",
    )


def read_partition(
    lake: Lakehouse, table: str, column: str, day: dt.date, needed_by: str, producer: str
) -> DataFrame:
    """One date partition of an upstream table; a clear error when the table is missing."""
    if not lake.exists(table):
        raise MissingInputError(
            f"{needed_by} for {day} needs {table} ({lake.path(table)}); "
            f"run `duia {producer} --date {day}` first"
        )
    return lake.read(table).where(F.col(column) == F.lit(day))


def require_rows(df: DataFrame, table: str, day: dt.date, needed_by: str, producer: str) -> None:
    if df.isEmpty():
        raise MissingInputError(
            f"{needed_by} for {day}: {table} has no rows as of {day}; "
            f"run `duia {producer} --date {day}` first"
        )
