"""A drop that lands after later days were built names the stale days and the command
that rebuilds them; a night's own drop (nothing built for it yet) says nothing."""

import datetime as dt

import pytest

from duia_spark.cli import main

FIRST = dt.date(2026, 1, 1)


@pytest.fixture
def raw(tmp_path):
    out = tmp_path / "raw"
    args = ["generate", "--out", str(out), "--users", "40", "--items", "20", "--days", "3"]
    assert main([*args, "--start-date", str(FIRST), "--seed", "2"]) == 0
    return out


def _ingest(cfg, raw, day: dt.date) -> int:
    return main(
        ["ingest", "--path", str(raw), "--date", str(day), "--lakehouse", cfg.lakehouse.root]
    )


def _build_features_up_to(spark, lake, last: dt.date) -> None:
    """Feature partitions of FIRST..last (only their day columns matter here)."""
    days = [(FIRST + dt.timedelta(days=i), "u1") for i in range((last - FIRST).days + 1)]
    for table in ("user_sequences", "samples"):
        col = "as_of_date" if table == "user_sequences" else "sample_date"
        frame = spark.createDataFrame(days, f"{col} date, user_id string")
        frame.write.format("delta").partitionBy(col).save(lake.path(table))


@pytest.mark.slow
def test_a_late_drop_names_the_stale_days_and_the_backfill_that_rebuilds_them(
    spark, lake, cfg, raw, capsys
):
    from duia_spark.stages.ingest import stale_days

    assert _ingest(cfg, raw, FIRST) == 0
    assert stale_days(lake, FIRST) is None  # nothing built yet
    _build_features_up_to(spark, lake, FIRST + dt.timedelta(days=2))
    capsys.readouterr()
    late = FIRST + dt.timedelta(days=1)
    assert _ingest(cfg, raw, late) == 0
    out = capsys.readouterr().out
    assert (
        f"[ingest] {late}..{FIRST + dt.timedelta(days=2)}: features built before this drop "
        "landed" in out
    ), out
    assert f"duia backfill --date {late} --end-date {FIRST + dt.timedelta(days=2)}" in out


@pytest.mark.slow
def test_a_nights_own_drop_reports_no_stale_day(spark, lake, cfg, raw, capsys):
    _build_features_up_to(spark, lake, FIRST + dt.timedelta(days=1))
    night = FIRST + dt.timedelta(days=2)
    assert _ingest(cfg, raw, night) == 0
    assert "do not see its rows" not in capsys.readouterr().out
