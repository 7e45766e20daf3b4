"""A dataset's config states facts about its data; the model and training defaults come
from conf/default.yaml, the same for every dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"
# What a dataset may say about the model: which labels it has and how they relate.
MODEL_FACTS = {"tasks", "task_weights", "regression_tasks", "positive_behaviours", "aux_task"}
# ... and about training: how many days of it there are before the validation day, and
# where this dataset's local state lives.
TRAIN_FACTS = {"train_days", "checkpoint_dir", "petastorm_cache_dir"}


@pytest.mark.parametrize("name", ["kuairand.yaml", "movielens.yaml"])
def test_a_dataset_config_sets_no_model_or_training_knob(name):
    conf = yaml.safe_load((CONF / name).read_text())
    tuned = {
        **{f"model.{k}": v for k, v in conf.get("model", {}).items() if k not in MODEL_FACTS},
        **{f"train.{k}": v for k, v in conf.get("train", {}).items() if k not in TRAIN_FACTS},
    }
    assert tuned == {}, f"{name} tunes what conf/default.yaml decides for every dataset"
