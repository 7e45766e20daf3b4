"""I/O properties of the feature stages: idempotent, incremental, atomic, clear on missing input."""

import dataclasses
import shutil

import pytest
from pyspark.sql import functions as F

import duia_spark.stages.samples as samples_stage
import duia_spark.stages.segment as segment_stage

from .hand_built import D, day, ev, events_frame, run_stage_in

TABLES = {
    "user_activity": "activity_date",
    "user_sequences": "as_of_date",
    "item_stats": "stats_date",
    "samples": "sample_date",
}


def _world():
    rows = []
    for d in range(-4, 2):
        rel = f"D{d:+d}" if d else "D"
        rows += [
            ev("u1", f"i{(d + 4) % 5}", f"{rel} 09:00", like=1),
            ev("u1", f"i{(d + 5) % 5}", f"{rel} 10:00", hate=1),
            ev(f"n{d + 4}", "i0", f"{rel} 11:00", click=1),  # a new user every day
        ]
    return rows


@pytest.fixture(scope="module")
def backfilled(spark, base_cfg, tmp_path_factory):
    """The world backfilled once per module: every stage on D-1 and D, the upstream
    stages (all but samples) on D+1. Tests take a copy (`backfilled_lake`)."""
    from duia_spark.lakehouse import Lakehouse

    root = tmp_path_factory.mktemp("backfilled") / "lakehouse"
    cfg = dataclasses.replace(
        base_cfg, lakehouse=dataclasses.replace(base_cfg.lakehouse, root=str(root))
    )
    rows = _world()
    days = {r["event_date"] for r in rows}
    Lakehouse(spark, cfg).replace_partitions(
        events_frame(spark, rows), "events", "event_date", days
    )
    assert run_stage_in(cfg, "backfill", "--date", str(day(-1)), "--end-date", str(D)) == 0
    upstream = "segment,sequences,item-stats"
    one_day = ("--date", str(day(1)), "--end-date", str(day(1)))
    assert run_stage_in(cfg, "backfill", *one_day, "--stages", upstream) == 0
    return root


@pytest.fixture
def backfilled_lake(backfilled, cfg, lake):
    """This test's lakehouse, a copy of the backfilled world (Delta logs hold relative paths)."""
    shutil.copytree(backfilled, cfg.lakehouse.root)
    return lake


def _files(lake, table, col, value):
    return sorted(lake.read(table).where(F.col(col) == value).inputFiles())


def _rows(lake, table, col, value):
    return sorted(lake.read(table).where(F.col(col) == value).collect())


@pytest.mark.slow
def test_rerunning_a_day_replaces_only_that_day_and_changes_nothing_else(
    backfilled_lake, run_stage
):
    lake = backfilled_lake
    assert run_stage("samples", "--date", str(day(1))) == 0  # every table's D+1 after D
    before = {
        t: {d: (_files(lake, t, c, d), _rows(lake, t, c, d)) for d in (D, day(1))}
        for t, c in TABLES.items()
    }
    vocab_before = sorted(lake.read("vocabulary").collect())
    for stage in ("segment", "sequences", "item-stats", "samples"):
        assert run_stage(stage, "--date", str(D)) == 0
    for t, c in TABLES.items():
        # D: same rows, no duplicates; D+1 (written after D): the very same files.
        assert _rows(lake, t, c, D) == before[t][D][1], t
        assert len(_rows(lake, t, c, D)) == lake.read(t).where(F.col(c) == D).distinct().count()
        assert _files(lake, t, c, day(1)) == before[t][day(1)][0], t
    assert sorted(lake.read("vocabulary").collect()) == vocab_before
    # Every id has exactly one index; indices per kind are 1..n.
    vocab = lake.read("vocabulary")
    assert vocab.count() == vocab.select("kind", "id").distinct().count()
    for r in (
        vocab.groupBy("kind")
        .agg(F.count("*").alias("n"), F.min("idx").alias("lo"), F.max("idx").alias("hi"))
        .collect()
    ):
        assert (r["lo"], r["hi"]) == (1, r["n"])


def test_incremental_sequences_equal_a_full_rebuild(backfilled_lake, run_stage):
    lake = backfilled_lake  # D's snapshot was advanced from D-1's
    incremental = _rows(lake, "user_sequences", "as_of_date", D)
    assert run_stage("sequences", "--date", str(D), "--full-rebuild") == 0
    assert _rows(lake, "user_sequences", "as_of_date", D) == incremental
    assert incremental  # not trivially empty


def _short_windows(cfg, activity_days=2, item_days=(1, 2)):
    """Windows shorter than the world, so that days leave them while the days advance."""
    return dataclasses.replace(
        cfg,
        activity=dataclasses.replace(cfg.activity, window_days=activity_days),
        item_stats=dataclasses.replace(cfg.item_stats, windows_days=list(item_days)),
    )


def test_advancing_window_counts_day_by_day_equals_recounting_each_day(
    cfg, lake, write_events, run_stage, capsys
):
    write_events(_world())
    conf = _short_windows(cfg)
    stages = "segment,item-stats"
    assert (
        run_stage(
            "backfill", "--date", str(day(-3)), "--end-date", str(day(2)), "--stages", stages,
            config=conf,
        )
        == 0
    )  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("counting the whole window") == 2  # the first day only, per stage
    assert out.count("advanced from the day before") == 10
    advanced = {
        t: {d: _rows(lake, t, TABLES[t], day(d)) for d in range(-3, 3)}
        for t in ("user_activity", "item_stats")
    }
    # Recounted on the last three days: those advanced past days that left the windows.
    for d in range(0, 3):
        for stage in ("segment", "item-stats"):
            assert run_stage(stage, "--date", str(day(d)), "--full-rebuild", config=conf) == 0
    for t, by_day in advanced.items():
        for d in range(0, 3):
            assert _rows(lake, t, TABLES[t], day(d)) == by_day[d], (t, d)
    # Not trivially equal: users and items left the windows while the days advanced.
    assert advanced["user_activity"][2] and advanced["item_stats"][2]
    assert {r["user_id"] for r in advanced["user_activity"][-1]} != {
        r["user_id"] for r in advanced["user_activity"][2]
    }


def test_a_window_written_under_another_config_is_recounted_with_a_notice(
    cfg, lake, write_events, run_stage, capsys
):
    write_events(_world())
    for d in (-1, 0):
        for stage in ("segment", "item-stats"):
            assert run_stage(stage, "--date", str(day(d)), config=_short_windows(cfg)) == 0
    capsys.readouterr()
    longer = _short_windows(cfg, activity_days=3, item_days=(1, 3))
    for stage in ("segment", "item-stats"):
        assert run_stage(stage, "--date", str(day(1)), config=longer) == 0
    out = capsys.readouterr().out
    assert out.count("was written under another config") == 2
    advanced = {t: _rows(lake, t, TABLES[t], day(1)) for t in ("user_activity", "item_stats")}
    for stage in ("segment", "item-stats"):
        assert run_stage(stage, "--date", str(day(1)), "--full-rebuild", config=longer) == 0
    assert {t: _rows(lake, t, TABLES[t], day(1)) for t in advanced} == advanced


def test_missing_previous_snapshot_triggers_a_full_rebuild_with_a_notice(
    lake, write_events, run_stage, capsys
):
    write_events(_world())
    assert run_stage("sequences", "--date", str(D)) == 0
    assert "full rebuild" in capsys.readouterr().out
    assert {r["user_id"] for r in _rows(lake, "user_sequences", "as_of_date", D)} >= {
        "u1",
        "n0",
        "n3",
    }


def _failing(fn):
    @F.udf("string")
    def explode_at_write(value):
        raise RuntimeError("injected failure while writing")

    def wrapped(*args, **kwargs):
        return fn(*args, **kwargs).withColumn("user_id", explode_at_write("user_id"))

    return wrapped


@pytest.mark.slow
def test_a_crash_while_writing_leaves_every_table_as_it_was(
    backfilled_lake, run_stage, monkeypatch
):
    lake = backfilled_lake
    tables = [*TABLES, "vocabulary"]
    versions = {t: lake.version(t) for t in tables}
    rows = {t: sorted(lake.read(t).collect()) for t in tables}
    monkeypatch.setattr(samples_stage, "assemble_samples", _failing(samples_stage.assemble_samples))
    monkeypatch.setattr(
        segment_stage,
        "segment_users_by_activity",
        _failing(segment_stage.segment_users_by_activity),
    )
    # segment recounts D's whole window; samples for D+1 would add new ids to the vocabulary
    for argv in (
        ("segment", "--date", str(D), "--full-rebuild"),
        ("samples", "--date", str(day(1))),
    ):
        with pytest.raises(Exception, match="injected failure"):
            run_stage(*argv)
    assert {t: lake.version(t) for t in tables} == versions
    assert {t: sorted(lake.read(t).collect()) for t in tables} == rows


@pytest.mark.parametrize("policy", ["empty", "skip"])
def test_a_day_without_events_gives_a_message_and_an_empty_partition_or_a_skip(
    cfg, lake, write_events, run_stage, capsys, policy
):
    write_events([ev("u1", "a", "D-1 10:00")])
    conf = dataclasses.replace(
        cfg, sequences=dataclasses.replace(cfg.sequences, on_missing_events=policy)
    )
    for stage in ("segment", "sequences", "item-stats", "samples"):
        assert run_stage(stage, "--date", str(D), config=conf) == 0
    assert f"no events on {D}" in capsys.readouterr().out
    if policy == "skip":
        assert not any(lake.exists(t) for t in TABLES)
    else:
        assert lake.exists("samples") and lake.read("samples").count() == 0
        assert [r["user_id"] for r in lake.read("user_sequences").collect()] == ["u1"]
