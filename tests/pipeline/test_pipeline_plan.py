import pytest

from duia_spark.pipeline import NIGHTLY_STAGES, plan_stages, stage_calls


def test_a_rerun_skips_what_succeeded_and_resumes_at_the_failure():
    done = {"ingest", "segment", "sequences"}
    assert plan_stages(NIGHTLY_STAGES, done)[0] == "item-stats"
    assert plan_stages(NIGHTLY_STAGES, set(NIGHTLY_STAGES)) == []
    assert plan_stages(NIGHTLY_STAGES, set(NIGHTLY_STAGES), force=True) == list(NIGHTLY_STAGES)


def test_from_stage_reruns_it_and_everything_after_and_only_runs_exactly_those():
    assert plan_stages(NIGHTLY_STAGES, set(NIGHTLY_STAGES), from_stage="evaluate") == [
        "evaluate",
        "score",
    ]
    assert plan_stages(NIGHTLY_STAGES, set(), only=["score", "segment"]) == ["segment", "score"]
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        plan_stages(NIGHTLY_STAGES, set(), only=["trian"])


def test_baselines_are_trained_unregistered_and_the_main_variant_is_not_repeated():
    import datetime as dt

    calls = stage_calls(
        "train-baselines", dt.date(2026, 1, 5), "synthetic", "/raw", ["ple", "ple+duia"], "ple+duia"
    )
    assert [c.flags for c in calls] == [
        ("--date", "2026-01-05", "--variant", "ple", "--no-register", "--cold-start")
    ]
    with pytest.raises(ValueError, match="--raw"):
        stage_calls("ingest", dt.date(2026, 1, 5), "synthetic", None, [], "ple")
