"""Which days a night trains on: the days since the model it continues from, or the
whole window (training/incremental.py)."""

from __future__ import annotations

import datetime as dt

from duia_spark.training.incremental import EarlierModel, plan_training

D = dt.date(2026, 3, 20)


def earlier(days_before: int, full_days_before: int | None = None) -> EarlierModel:
    data_date = D - dt.timedelta(days=days_before)
    full = D - dt.timedelta(days=full_days_before if full_days_before else days_before)
    return EarlierModel("version 3", "models:/m/3", data_date, full, "3")


def test_a_normal_night_trains_on_the_one_day_since_yesterdays_model():
    plan = plan_training(D, 14, 1, earlier(1), full_retrain_every_days=7)
    assert plan.incremental and plan.start.version == "3"
    assert (plan.split.train_first, plan.split.train_last) == (D - dt.timedelta(days=1),) * 2
    assert plan.split.validation_first == plan.split.validation_last == D
    assert plan.last_full_retrain == D - dt.timedelta(days=1)
    assert "version 3" in plan.describe() and "on the day since" in plan.describe()


def test_a_missed_night_adds_its_day_and_a_longer_validation_window_shifts_with_it():
    plan = plan_training(D, 14, 1, earlier(3))
    assert plan.split.train_first == D - dt.timedelta(days=3)
    assert plan.split.train_last == D - dt.timedelta(days=1)
    # validated on [D0 - 1, D0] before: those days now train, with the ones after them
    plan = plan_training(D, 14, 2, earlier(1))
    assert plan.split.train_first == plan.split.train_last == D - dt.timedelta(days=2)
    assert plan.split.validation_first == D - dt.timedelta(days=1)


def test_the_whole_window_trains_without_a_model_when_asked_or_when_the_model_is_too_old():
    window = plan_training(D, 14, 1, None)
    assert not window.incremental and window.split.train_first == D - dt.timedelta(days=14)
    assert "no earlier model" in window.reason and window.start is None
    assert window.last_full_retrain == D
    assert "--full" in plan_training(D, 14, 1, earlier(1), full_requested=True).reason
    assert "incremental is off" in plan_training(D, 14, 1, earlier(1), incremental=False).reason
    assert "older than the window" in plan_training(D, 14, 1, earlier(15)).reason
    assert "not before" in plan_training(D, 14, 1, earlier(0)).reason
    for plan in (plan_training(D, 14, 1, earlier(15)), plan_training(D, 14, 1, earlier(0))):
        assert plan.split == window.split


def test_the_schedule_retrains_the_window_when_the_chains_last_full_retrain_is_old():
    assert plan_training(D, 14, 1, earlier(1, 6), full_retrain_every_days=7).incremental
    plan = plan_training(D, 14, 1, earlier(1, 7), full_retrain_every_days=7)
    assert not plan.incremental and "7 days ago" in plan.reason
    assert plan_training(D, 14, 1, earlier(1, 30), full_retrain_every_days=0).incremental


def test_days_rebuilt_after_a_late_drop_are_trained_on_again():
    rebuilt = D - dt.timedelta(days=4)
    plan = plan_training(D, 14, 1, earlier(1), rebuilt_from=rebuilt)
    assert plan.incremental and plan.split.train_first == rebuilt
    assert f"from {rebuilt} rebuilt after a late drop" in plan.reason
    # a rebuilt day the earlier model never trained on changes nothing
    assert plan_training(D, 14, 1, earlier(2), rebuilt_from=D - dt.timedelta(days=1)).split == (
        plan_training(D, 14, 1, earlier(2)).split
    )
    assert not plan_training(
        D, 14, 1, earlier(1), rebuilt_from=D - dt.timedelta(days=30)
    ).incremental


def _plan_from_saved_weights(tmp_path, saved_cfg, own_cfg):
    """The incremental night's plan once the earlier model's weights (built from
    `saved_cfg`) are checked against this night's model (`own_cfg`)."""
    import torch

    from duia_spark.config import load_config
    from duia_spark.model.ranker import build_ranker
    from duia_spark.stages.train import _full_if_weights_do_not_fit
    from duia_spark.training.registry import StartFiles

    weights = tmp_path / "model.pt"
    torch.save(build_ranker(saved_cfg).state_dict(), weights)
    start = StartFiles(memory=str(tmp_path / "memory"), weights=str(weights))
    plan = plan_training(D, 14, 1, earlier(1))
    return _full_if_weights_do_not_fit(load_config(), plan, start, own_cfg, D)


def test_weights_of_another_architecture_make_the_night_a_full_retrain(tmp_path):
    from tests.tiny_model import tiny_config

    plan, start = _plan_from_saved_weights(
        tmp_path, tiny_config(variant="ple", expert_hidden=32), tiny_config(variant="ple")
    )
    assert plan.incremental  # same layout: continues
    plan, start = _plan_from_saved_weights(
        tmp_path, tiny_config(variant="ple", expert_hidden=24), tiny_config(variant="ple")
    )
    assert not plan.incremental and plan.split.train_first == D - dt.timedelta(days=14)
    assert "do not fit this model" in plan.reason and "version 3" in plan.reason
    assert start.weights is None and start.memory is not None  # memories still seed it


def test_grown_vocabularies_still_continue_the_earlier_weights(tmp_path):
    from tests.tiny_model import tiny_config

    plan, _ = _plan_from_saved_weights(
        tmp_path,
        tiny_config(variant="ple", n_users=300, n_items=400),
        tiny_config(variant="ple", n_users=350, n_items=420),
    )
    assert plan.incremental
