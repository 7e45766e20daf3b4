import dataclasses
import datetime as dt

from pyspark.sql import functions as F

from duia_spark.data.sequences import (
    advance_user_sequences,
    build_user_sequences,
    merge_ranked_lists,
)

from .hand_built import D, day, ev


def _lists(df):
    return {
        r["user_id"]: {
            k: [e["item_id"] for e in r[k]] for k in ("exposures", "positives", "negatives")
        }
        for r in df.collect()
    }


def test_sequences_are_most_recent_first_and_never_include_the_as_of_day(spark, cfg, events_df):
    events = events_df(
        [
            ev("u", "a", "D-2 09:00", long_view=1),
            ev("u", "b", "D-1 10:00", like=1),
            ev("u", "c", "D-1 11:00", hate=1),
            ev("u", "today", "D 00:01", like=1, hate=1),
        ]
    )
    snap = build_user_sequences(events, D, cfg.sequences)
    assert _lists(snap) == {
        "u": {"exposures": ["c", "b", "a"], "positives": ["b", "a"], "negatives": ["c"]}
    }
    row = snap.first()
    assert row["as_of_date"] == D
    assert row["exposures"][1]["like"] == 1 and row["exposures"][0]["hate"] == 1


def test_incremental_advance_equals_full_rebuild_day_after_day(spark, cfg, events_df):
    seq = dataclasses.replace(cfg.sequences, exposures_len=3, positives_len=2, negatives_len=1)
    rows = []
    for d in range(1, 6):
        for i in range(3):
            # Same timestamp for two items (tie broken by item id), sparse positives/negatives.
            rows.append(
                ev("u1", f"i{d}{i}", f"D-{d} 1{i % 2}:00", like=int(i == 0), hate=int(i == 2))
            )
        if d % 2:
            rows.append(ev("u2", f"j{d}", f"D-{d} 12:00", long_view=1))
    events = events_df(rows).cache()
    snap = build_user_sequences(events, day(-4), seq)
    for as_of in (day(-3), day(-2), day(-1), D):
        prev_day = as_of - dt.timedelta(days=1)
        snap = advance_user_sequences(
            snap, events.where(F.col("event_date") == prev_day), as_of, seq
        ).cache()
        full = build_user_sequences(events, as_of, seq)
        assert sorted(snap.collect()) == sorted(full.collect()), as_of
    assert _lists(snap)["u1"]["exposures"] == ["i11", "i10", "i12"]
    events.unpersist()


def test_a_user_with_100x_the_median_events_gets_lists_capped_at_n(spark, cfg, events_df):
    rows = [ev(f"u{k}", f"i{k}", "D-1 10:00", like=1) for k in range(5)]
    rows += [
        ev(
            "heavy",
            f"h{i:03d}",
            f"D-{1 + i % 3} {i % 24:02d}:{i % 60:02d}",
            like=i % 2,
            hate=int(i % 3 == 0),
        )
        for i in range(500)
    ]
    snap = build_user_sequences(events_df(rows), D, cfg.sequences)
    heavy = snap.where("user_id = 'heavy'").first()
    assert len(heavy["exposures"]) == cfg.sequences.exposures_len
    assert len(heavy["positives"]) == cfg.sequences.positives_len
    assert len(heavy["negatives"]) == cfg.sequences.negatives_len
    ts = [e["event_ts"] for e in heavy["exposures"]]
    assert ts == sorted(ts, reverse=True)
    assert snap.where("user_id = 'u0'").first()["positives"][0]["item_id"] == "i0"


def test_merging_two_ranked_lists_keeps_the_top_n_even_when_their_times_overlap(spark):
    t = dt.datetime(2026, 1, 1, 10)
    hours = dt.timedelta(hours=1)
    df = spark.createDataFrame(
        [
            (
                [("n1", t + 2 * hours), ("n2", t)],
                [("o1", t + 3 * hours), ("o2", t), ("o3", t - hours)],
            )
        ],
        "newer array<struct<item_id:string,event_ts:timestamp>>, "
        "older array<struct<item_id:string,event_ts:timestamp>>",
    )
    merged = df.select(merge_ranked_lists(F.col("newer"), F.col("older"), 4).alias("m")).first()
    # Later first; "n2" and "o2" share a time, so the item id orders them.
    assert [e["item_id"] for e in merged["m"]] == ["o1", "n1", "n2", "o2"]


def test_merging_ranked_lists_gives_the_sorted_top_n_whether_or_not_their_times_touch(spark):
    t = dt.datetime(2026, 1, 1, 10)
    h = dt.timedelta(hours=1)
    cases = [
        # apart: the newer list is later than all of the older one (the nightly case)
        ([("n1", t + 3 * h), ("n2", t + 2 * h)], [("o1", t + h), ("o2", t), ("o3", t - h)]),
        # touching: the oldest newer and the newest older share a time
        ([("n2", t + h), ("n9", t)], [("n1", t), ("o1", t - h)]),
        ([], [("o1", t), ("o2", t - h)]),  # no newer element of this list
        ([("n1", t), ("n2", t - h)], []),  # nothing older
        ([], []),
    ]
    df = spark.createDataFrame(
        [(i, newer, older) for i, (newer, older) in enumerate(cases)],
        "case int, newer array<struct<item_id:string,event_ts:timestamp>>, "
        "older array<struct<item_id:string,event_ts:timestamp>>",
    )
    got = {
        r["case"]: [e["item_id"] for e in r["m"]]
        for r in df.select(
            "case", merge_ranked_lists(F.col("newer"), F.col("older"), 3).alias("m")
        ).collect()
    }
    for i, (newer, older) in enumerate(cases):
        expected = sorted(newer + older, key=lambda e: (-e[1].timestamp(), e[0]))[:3]
        assert got[i] == [item for item, _ in expected], i
