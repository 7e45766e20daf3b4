"""gold.samples built by the stages on hand-built events where a leak would change the answer."""

import math

import pytest
from pyspark.sql import functions as F

from duia_spark.data.samples import USER_DENSE_FEATURES, item_dense_features, samples_schema
from duia_spark.stages.day_inputs import MissingInputError

from .hand_built import D, ev

FEATURE_STAGES = ("segment", "sequences", "item-stats", "samples")

EVENTS = [
    ev("u1", "a", "D-2 09:00", long_view=1),
    ev("u1", "b", "D-1 10:00", like=1),
    ev("u1", "c", "D-1 11:00", hate=1),
    ev("u2", "y", "D-1 12:00", click=1),
    # Day D: u1 sees x then y; u2 sees y. Their signals are labels only.
    ev("u1", "x", "D 08:00", click=1, long_view=1),
    ev("u1", "y", "D 09:00", click=None, like=None, play_time_ms=None),
    ev("u2", "y", "D 10:00", click=0),
]


def _idx(lake, kind, ids):
    vocab = {
        r["id"]: r["idx"] for r in lake.read("vocabulary").where(F.col("kind") == kind).collect()
    }
    return [vocab[i] for i in ids]


def test_sample_features_come_only_from_before_the_run_date(
    spark, lake, cfg, write_events, run_stage
):
    write_events(EVENTS)
    for stage in FEATURE_STAGES:
        assert run_stage(stage, "--date", str(D)) == 0
    rows = {(r["user_id"], r["item_id"]): r for r in lake.read("samples").collect()}
    assert set(rows) == {("u1", "x"), ("u1", "y"), ("u2", "y")}

    x, y = rows[("u1", "x")], rows[("u1", "y")]
    n_exp, n_pos, n_neg = (
        cfg.sequences.exposures_len,
        cfg.sequences.positives_len,
        cfg.sequences.negatives_len,
    )
    # History as of the start of D: x (earlier on D) is not in y's history.
    for r in (x, y):
        assert r["hist_items"] == _idx(lake, "item", ["c", "b", "a"]) + [0] * (n_exp - 3)
        assert r["pos_items"] == _idx(lake, "item", ["b", "a"]) + [0] * (n_pos - 2)
        assert r["neg_items"] == _idx(lake, "item", ["c"]) + [0] * (n_neg - 1)
        assert (r["hist_len"], r["pos_len"], r["neg_len"]) == (3, 2, 1)
    # Activity: 2 active days before D (3 would mean D leaked in).
    dense = dict(zip(USER_DENSE_FEATURES, x["user_dense"], strict=True))
    assert dense["log1p_active_days"] == pytest.approx(math.log1p(2))
    assert dense["log1p_exposures"] == pytest.approx(math.log1p(3))
    assert x["segment"] == "low" and x["segment_idx"] == 0
    # Item stats: y had one exposure (a click) on D-1; D's two exposures of y must not count.
    y_dense = dict(zip(item_dense_features(cfg.item_stats), y["item_dense"], strict=True))
    assert y_dense["log1p_exposures_1d"] == pytest.approx(math.log1p(1))
    assert y_dense["click_rate_1d"] == pytest.approx(1.0)
    x_dense = dict(zip(item_dense_features(cfg.item_stats), x["item_dense"], strict=True))
    assert x_dense["log1p_exposures_30d"] == 0.0 and x_dense["click_rate_30d"] == 0.0
    # A user with no history: empty, zero-padded sequences.
    assert rows[("u2", "y")]["hist_items"][0] == _idx(lake, "item", ["y"])[0]
    # Labels: the exposure's own signals; null → 0 with a 0 mask.
    assert (x["click"], x["long_view"], x["click_known"]) == (1, 1, 1)
    assert (y["click"], y["click_known"], y["like_known"], y["play_time_known"]) == (0, 0, 0, 0)
    assert y["long_view_known"] == 1


def test_profile_demographics_reach_user_dense_and_unknown_ones_stay_zero(
    spark, lake, write_events, run_stage
):
    write_events(EVENTS)
    profiles = spark.createDataFrame(
        [("u1", "F", "24-30", 12, 3)],
        "user_id string, gender string, age_range string, register_days int, follow_user_num int",
    )
    lake.upsert(profiles, "user_profiles", ["user_id"])
    for stage in FEATURE_STAGES:
        assert run_stage(stage, "--date", str(D)) == 0
    dense = {
        r["user_id"]: dict(zip(USER_DENSE_FEATURES, r["user_dense"], strict=True))
        for r in lake.read("samples").collect()
    }
    u1, u2 = dense["u1"], dense["u2"]
    assert (u1["gender_female"], u1["gender_male"]) == (1.0, 0.0)
    assert u1["age_decades"] == pytest.approx(2.7)
    assert u1["log1p_register_days"] == pytest.approx(math.log1p(12))
    assert u1["profile_known"] == 1.0
    # u2 has no profile row: every profile feature is 0, never a guess.
    assert (u2["gender_female"], u2["gender_male"], u2["age_decades"], u2["profile_known"]) == (
        0.0,
        0.0,
        0.0,
        0.0,
    )


def test_samples_match_the_model_batch_contract(spark, lake, cfg, write_events, run_stage):
    write_events(EVENTS)
    for stage in FEATURE_STAGES:
        run_stage(stage, "--date", str(D))
    df = lake.read("samples")
    expected = {f.name: f.dataType.simpleString() for f in samples_schema().fields}
    assert {f.name: f.dataType.simpleString() for f in df.schema.fields} == expected
    r = df.first()
    assert len(r["user_dense"]) == len(USER_DENSE_FEATURES)
    assert len(r["item_dense"]) == len(item_dense_features(cfg.item_stats))
    assert min(r["user_idx"], r["item_idx"], r["category_idx"] + 1, r["author_idx"] + 1) >= 1


def test_samples_without_their_upstream_partition_say_which_stage_to_run(
    lake, write_events, run_stage
):
    write_events(EVENTS)
    with pytest.raises(MissingInputError, match="run `duia segment --date 2026-03-10`"):
        run_stage("samples", "--date", str(D))


def test_profile_age_and_gender_parsing(spark):
    from duia_spark.data.feature_encoding import age_years, gender_is

    raw = [("49", "M"), ("24-30", "f"), ("50+", "U"), (" 18 - 23 ", "female"), ("n/a", None)]
    df = spark.createDataFrame(raw, "age string, gender string")
    got = df.select(
        age_years(F.col("age")).alias("years"),
        gender_is(F.col("gender"), "F").alias("female"),
        gender_is(F.col("gender"), "M").alias("male"),
    ).collect()
    assert [r["years"] for r in got] == [49.0, 27.0, 50.0, 20.5, None]
    assert [(r["female"], r["male"]) for r in got] == [
        (0.0, 1.0),
        (1.0, 0.0),
        (0.0, 0.0),
        (1.0, 0.0),
        (0.0, 0.0),
    ]


def test_samples_read_only_the_item_ids_of_the_snapshot_lists(
    spark, lake, cfg, write_events, run_stage
):
    """The snapshot's lists also hold times and signals; the day's samples need only the
    ids, and the Parquet read must skip the rest (it grows with every user seen)."""
    from duia_spark.data.sample_sequences import sequence_indices
    from duia_spark.data.samples import sample_vocabulary_candidates

    write_events(EVENTS)
    for stage in ("segment", "sequences"):
        assert run_stage(stage, "--date", str(D)) == 0
    snapshot = lake.read("user_sequences").where(F.col("as_of_date") == F.lit(D))
    day_events = lake.read("events").where(F.col("event_date") == F.lit(D))
    users = day_events.select("user_id").distinct()
    vocabulary = spark.createDataFrame([("item", "a", 1)], "kind string, id string, idx int")
    for frame in (
        sample_vocabulary_candidates(day_events, snapshot, None),
        sequence_indices(snapshot, users, vocabulary, cfg.sequences),
    ):
        plan = frame._jdf.queryExecution().executedPlan().toString()
        snapshot_reads = [
            line for line in plan.splitlines() if "ReadSchema" in line and "exposures" in line
        ]
        assert snapshot_reads, plan
        for line in snapshot_reads:
            assert "item_id" in line
            assert "event_ts" not in line and "click" not in line, line
