import datetime as dt

import pytest

from duia_spark.data.item_stats import compute_item_stats
from duia_spark.data.vocabulary import (
    VOCABULARY_SCHEMA,
    assign_new_indices,
    vocabulary_candidates_by_column,
)

from .hand_built import D, ev


def test_item_stats_count_each_window_before_the_run_date_only(spark, cfg, events_df):
    events = events_df(
        [
            ev("u1", "a", "D-1 10:00", click=1),
            ev("u2", "a", "D-1 11:00", click=0),
            ev("u3", "a", "D-5 11:00", click=1, like=1),
            ev("u4", "a", "D-30 11:00", long_view=1),
            ev("u5", "a", "D-31 11:00", click=1),  # outside every window
            ev("u6", "a", "D 09:00", click=1),  # the day itself
            ev("u6", "fresh", "D 09:00", click=1),  # only on D: no stats row
        ]
    )
    rows = {r["item_id"]: r for r in compute_item_stats(events, D, cfg.item_stats).collect()}
    a = rows["a"]
    assert set(rows) == {"a"}
    assert (a["exposures_1d"], a["exposures_7d"], a["exposures_30d"]) == (2, 3, 4)
    assert a["click_rate_1d"] == 0.5
    assert a["click_7d"] == 2 and a["like_7d"] == 1
    assert a["long_view_rate_30d"] == 0.25
    assert a["stats_date"] == D


def test_new_ids_get_the_next_indices_in_id_order_and_old_ids_keep_theirs(spark):
    seen = dt.date(2026, 1, 1)
    vocab = spark.createDataFrame(
        [("item", "m", 1, seen), ("item", "b", 2, seen), ("user", "u9", 1, seen)], VOCABULARY_SCHEMA
    )
    cands = spark.createDataFrame(
        [("item", "z"), ("item", "b"), ("item", "c"), ("user", "u1"), ("author", "x")],
        "kind string, id string",
    )
    new = {(r["kind"], r["id"]): r["idx"] for r in assign_new_indices(cands, vocab, D).collect()}
    assert new == {("item", "c"): 3, ("item", "z"): 4, ("user", "u1"): 2, ("author", "x"): 1}
    empty = spark.createDataFrame([], VOCABULARY_SCHEMA)
    first = sorted(
        r["idx"] for r in assign_new_indices(cands, empty, D).where("kind = 'item'").collect()
    )
    assert first == [1, 2, 3]  # 0 stays reserved for padding / unknown


def test_candidates_by_column_read_several_kinds_of_one_frame_and_drop_blanks(spark):
    items = spark.createDataFrame(
        [("i1", "c1", "a1"), ("i2", None, " "), ("i3", "c1", "a2")],
        "item_id string, category string, author_id string",
    )
    got = vocabulary_candidates_by_column(
        items, {"item": "item_id", "category": "category", "author": "author_id"}
    )
    assert sorted((r["kind"], r["id"]) for r in got.collect()) == [
        ("author", "a1"),
        ("author", "a2"),
        ("category", "c1"),
        ("category", "c1"),
        ("item", "i1"),
        ("item", "i2"),
        ("item", "i3"),
    ]
    with pytest.raises(ValueError, match="unknown vocabulary kind 'genre'"):
        vocabulary_candidates_by_column(items, {"genre": "category"})
