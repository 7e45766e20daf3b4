import dataclasses

from duia_spark.data.activity import segment_users_by_activity

from .hand_built import D, ev


def _by_user(df):
    return {r["user_id"]: r for r in df.collect()}


def test_segment_counts_only_the_window_before_the_run_date(spark, cfg, events_df):
    events = events_df(
        [
            ev("u1", "a", "D-1 10:00", long_view=1),
            ev("u1", "b", "D-30 10:00", long_view=1),  # first day of a 30-day window
            ev("u1", "c", "D-31 10:00", long_view=1),  # just outside
            *[ev("u1", f"x{i}", f"D 0{i}:00", long_view=1) for i in range(5)],  # the day itself
            ev("u2", "a", "D 10:00"),  # only on D: cold
        ]
    )
    out = _by_user(segment_users_by_activity(events, D, cfg.activity))
    assert (out["u1"]["active_days"], out["u1"]["valid_interactions"], out["u1"]["exposures"]) == (
        2,
        2,
        2,
    )
    assert (out["u2"]["active_days"], out["u2"]["exposures"], out["u2"]["segment"]) == (0, 0, "low")
    assert {r["activity_date"] for r in out.values()} == {D}


def test_segment_thresholds_split_low_mid_and_high(spark, cfg, events_df):
    act = dataclasses.replace(
        cfg.activity, low_max_active_days=2, low_min_valid_interactions=2, high_min_active_days=3
    )
    rows = []
    for d in (1, 2, 3):  # high: 3 active days, 3 valid
        rows.append(ev("hi", "a", f"D-{d} 10:00", long_view=1))
    for d in (1, 2):  # mid: 2 active days, 2 valid
        rows.append(ev("mid", "a", f"D-{d} 10:00", long_view=1))
    for d in (1, 2, 3):  # low despite 3 active days: only 1 valid interaction
        rows.append(ev("few_valid", "a", f"D-{d} 10:00", long_view=1 if d == 1 else 0))
    out = _by_user(segment_users_by_activity(events_df(rows), D, act))
    assert {u: r["segment"] for u, r in out.items()} == {
        "hi": "high",
        "mid": "mid",
        "few_valid": "low",
    }


def test_play_time_rule_makes_an_interaction_valid_when_enabled(spark, cfg, events_df):
    events = events_df(
        [ev("u", "a", "D-1 10:00", play_time_ms=9000), ev("u", "b", "D-1 11:00", play_time_ms=10)]
    )
    off = _by_user(segment_users_by_activity(events, D, cfg.activity))
    on = _by_user(
        segment_users_by_activity(
            events, D, dataclasses.replace(cfg.activity, valid_min_play_time_ms=5000)
        )
    )
    assert off["u"]["valid_interactions"] == 0
    assert on["u"]["valid_interactions"] == 1
