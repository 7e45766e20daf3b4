import pytest

from duia_spark.pipeline import NIGHTLY_STAGES, baseline_variants, plan_stages, require_raw


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


def test_baselines_leave_out_the_main_variant_and_ingest_needs_the_raw_folder():
    assert baseline_variants(["ple", "ple+duia"], "ple+duia") == ["ple"]
    assert baseline_variants(["ple"], "ple") == []
    assert require_raw("/raw") == "/raw"
    with pytest.raises(ValueError, match="--raw"):
        require_raw(None)
