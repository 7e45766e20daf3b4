"""A drop that lands after later days were built names the stale days and the command
that rebuilds them, and the next nightly rebuilds them as a clean run would; a night's
own drop (nothing built for it yet) says nothing."""

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
def test_a_nights_own_drop_reports_no_stale_day(spark, lake, cfg, raw, capsys):
    _build_features_up_to(spark, lake, FIRST + dt.timedelta(days=1))
    night = FIRST + dt.timedelta(days=2)
    assert _ingest(cfg, raw, night) == 0
    assert "do not see its rows" not in capsys.readouterr().out


def _samples(lake) -> set[tuple]:
    """The samples table's rows as they stand now (a few hundred)."""
    frame = lake.read("samples").toPandas()
    return {tuple(map(str, row)) for row in frame.itertuples(index=False)}


@pytest.mark.slow
def test_the_nightly_after_a_late_drop_rebuilds_the_stale_days_as_a_clean_run_builds_them(
    spark, lake, cfg, raw, capsys
):
    from duia_spark.stale_days import pending

    root = cfg.lakehouse.root
    late = FIRST + dt.timedelta(days=1)
    night = late + dt.timedelta(days=1)
    assert _ingest(cfg, raw, FIRST) == 0
    backfill = ["backfill", "--date", str(late), "--end-date", str(late), "--lakehouse", root]
    assert main([*backfill, "--stages", "segment"]) == 0  # day 2 built before its drop
    capsys.readouterr()
    assert _ingest(cfg, raw, late) == 0
    out = capsys.readouterr().out
    assert f"[ingest] {late}..{late}: features built before this drop landed" in out, out
    assert f"duia backfill --date {late} --end-date {late}" in out
    assert pending(lake, night) == (late, late)
    # The next night rebuilds day 2 before its own stages.
    assert main(["nightly", "--date", str(night), "--only", "segment", "--lakehouse", root]) == 0
    assert f"rebuilding {late}..{late} first" in capsys.readouterr().out
    assert pending(lake, night) is None  # stamped rebuilt
    rebuilt = _samples(lake)
    assert rebuilt and {row[-1] for row in rebuilt} == {str(late)}  # sample_date
    # A clean run: the day recounted from the complete events.
    assert main([*backfill, "--full-rebuild"]) == 0
    assert _samples(lake) == rebuilt
