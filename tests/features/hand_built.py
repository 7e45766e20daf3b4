"""Hand-built events for the feature tests (small, dated relative to a run date D), as
rows or a DataFrame, and a way to run a stage on them."""

from __future__ import annotations

import datetime as dt

from duia_spark.data.schema import EVENTS_SCHEMA, SIGNALS

D = dt.date(2026, 3, 10)  # the run date most tests use


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def ev(user: str, item: str, when: str, **signals: int | None) -> dict:
    """One event; `when` is "D-1 10:00" style (relative day + UTC time)."""
    rel, hhmm = when.split()
    offset = int(rel[1:]) if rel != "D" else 0
    ts = dt.datetime.combine(day(offset), dt.time.fromisoformat(hhmm))
    row = {s: signals.get(s, 0) for s in SIGNALS}
    row.update(
        user_id=user,
        item_id=item,
        event_ts=ts,
        play_time_ms=signals.get("play_time_ms", 1000),
        duration_ms=signals.get("duration_ms", 10_000),
        source="test",
        source_file="test.csv",
        ingest_ts=dt.datetime(2026, 1, 1),
        event_date=ts.date(),
    )
    return row


def events_frame(spark, rows: list[dict]):
    """`ev` rows as a DataFrame of bronze.events' schema."""
    return spark.createDataFrame(
        [tuple(r.get(f.name) for f in EVENTS_SCHEMA.fields) for r in rows], EVENTS_SCHEMA
    )


def run_stage_in(cfg, stage: str, *argv: str) -> int:
    """Run `duia <stage> [argv]` in-process against `cfg`'s lakehouse; the exit code."""
    from duia_spark.cli import build_parser
    from duia_spark.stages import load_stage

    return load_stage(stage).run(cfg, build_parser().parse_args([stage, *argv]))
