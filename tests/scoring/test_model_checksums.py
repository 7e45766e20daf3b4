"""A registered model's files carry their sha256, and a damaged one stops score, evaluate
and the warm start on the driver, before any Spark work, in one line that names the
model, the version, the file and what to do."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow import MlflowClient

from duia_spark import tracking
from duia_spark.contract import MODEL_FILES
from duia_spark.model.config import ModelConfig
from duia_spark.model_checksums import (
    TAG_PREFIX,
    ModelFilesError,
    check_files,
    checksum_tags,
    file_sha256,
)

from .conftest import D, run_score, scoring_world_overrides, training

VAL_DAY = training.FIRST_DAY + dt.timedelta(days=training.N_DAYS - 1)  # the champion's


def test_a_file_that_differs_from_its_recorded_hash_is_named_with_both_hashes(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "artifacts").mkdir(parents=True)
    weights = model_dir / "artifacts" / "weights.pt"
    weights.write_bytes(b"the weights as registered")
    expected = {"weights": file_sha256(weights)}
    check_files("registered model 'm' v3", expected, {"weights": weights}, model_dir, "fix it")

    weights.write_bytes(b"the weights, cut")
    with pytest.raises(ModelFilesError) as e:
        check_files("registered model 'm' v3", expected, {"weights": weights}, model_dir, "fix it")
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith("registered model 'm' v3: artifacts/weights.pt is not the file")
    assert f"sha256 {file_sha256(weights)[:12]}, 16 bytes" in line
    assert f"registered {expected['weights'][:12]}" in line and line.endswith(": fix it")


def _store_path(name: str, version: str) -> Path:
    """Where the artifact store keeps a registered version's model folder."""
    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(urlparse(uri).path)


def _register_copy(cfg, tmp_path: Path, name: str):
    """Version 1 of the scoring world's champion registered again, under `name`, as its
    champion (its own files in the store) -> the config that scores with it."""
    tracking.configure_mlflow(cfg)
    v1 = MlflowClient().get_model_version(cfg.mlflow.registered_model, "1")
    src = tracking.download_model_artifacts(cfg, "1", str(tmp_path / "v1"))
    out = tmp_path / name
    out.mkdir()
    for key, file in (
        ("weights", "weights.pt"),
        ("cluster_memory", "cluster_memory.safetensors"),
        ("model_config", "model_config.json"),
    ):
        shutil.copy(tracking.artifact_file(src, key), out / file)
    mlflow.artifacts.download_artifacts(
        run_id=v1.run_id, artifact_path="history.json", dst_path=str(out)
    )
    copy = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, registered_model=name))
    model_cfg = ModelConfig.from_dict(json.loads((out / "model_config.json").read_text()))
    from duia_spark.training.incremental import plan_training
    from duia_spark.training.registry import log_and_register

    plan = plan_training(VAL_DAY, cfg.train.train_days, cfg.train.validation_days, None)
    result = log_and_register(copy, model_cfg, out, VAL_DAY, {}, plan, None)
    MlflowClient().set_registered_model_alias(name, "champion", result["version"])
    return copy


@pytest.fixture(scope="module")
def cut_champion(scoring_world, scoring_cfg, tmp_path_factory):
    """A champion whose weights file was cut short in the artifact store."""
    cfg = _register_copy(scoring_cfg, tmp_path_factory.mktemp("cut"), "duia-ranker-cut")
    weights = _store_path("duia-ranker-cut", "1") / "artifacts" / "weights.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return cfg


def _spark_must_not_start(*args, **kw):
    raise AssertionError("Spark started before the model's files were checked")


@pytest.mark.slow
def test_registration_records_the_sha256_of_each_model_file_on_the_version_and_its_run(
    scoring_world, scoring_cfg, tmp_path
):
    tracking.configure_mlflow(scoring_cfg)
    client = MlflowClient()
    v1 = client.get_model_version(scoring_cfg.mlflow.registered_model, "1")
    model_dir = tracking.download_model_artifacts(scoring_cfg, "1", str(tmp_path))
    files = {k: tracking.artifact_file(model_dir, k) for k in MODEL_FILES}
    expected = checksum_tags(files)
    assert set(expected) == {f"{TAG_PREFIX}{k}" for k in MODEL_FILES}
    assert {k: v1.tags[k] for k in expected} == expected
    run_tags = client.get_run(v1.run_id).data.tags
    assert {k: run_tags[k] for k in expected} == expected


@pytest.mark.slow
def test_score_refuses_a_cut_champion_before_spark_and_leaves_the_scores_table(
    spark, scoring_world, popular_scores, cut_champion, monkeypatch
):
    from duia_spark.stages import score as score_stage

    before = scoring_world.version("scores")
    monkeypatch.setattr(score_stage, "build_spark_session", _spark_must_not_start)
    with pytest.raises(ModelFilesError) as e:
        run_score(cut_champion)
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith("registered model 'duia-ranker-cut' v1: artifacts/weights.pt is not")
    assert "registered " in line and "bytes" in line
    # what to do: the alias back to a version that is not the broken one
    assert "point the alias 'champion' back to a good version" in line
    assert "set_registered_model_alias('duia-ranker-cut', 'champion', '" in line
    assert scoring_world.version("scores") == before


@pytest.mark.slow
def test_duia_score_reports_a_cut_champion_in_one_line(scoring_root, cut_champion):
    sets = [a for o in scoring_world_overrides(scoring_root) for a in ("--set", o)]
    proc = subprocess.run(
        [sys.executable, "-m", "duia_spark.cli", "score", "--date", str(D), *sets]
        + ["--set", "mlflow.registered_model=duia-ranker-cut"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )
    assert proc.returncode == 1, proc.stderr
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "duia score: failed: ModelFilesError: registered model 'duia-ranker-cut' v1: "
        "artifacts/weights.pt is not the file that was registered"
    )


@pytest.mark.slow
def test_the_warm_start_refuses_a_cut_champion(cut_champion, tmp_path):
    from duia_spark.training.registry import download_start_files, earlier_model

    cfg = cut_champion
    earlier = earlier_model(cfg, cfg.model.variant, dt.date(2100, 1, 1), registered=True)
    with pytest.raises(ModelFilesError, match=r"v1: artifacts/weights.pt .*--cold-start"):
        download_start_files(cfg, earlier, tmp_path / "warm", incremental=True)


@pytest.mark.slow
def test_an_incremental_night_starts_from_weights_memories_and_optimizer_a_full_one_from_memories(
    scoring_world, scoring_cfg, tmp_path
):
    from duia_spark.training.registry import download_start_files, earlier_model

    earlier = earlier_model(scoring_cfg, scoring_cfg.model.variant, D, registered=True)
    assert earlier.version == "1"
    full = download_start_files(scoring_cfg, earlier, tmp_path / "full", incremental=False)
    assert Path(full.memory).is_file() and full.weights is None and full.optimizer is None
    night = download_start_files(scoring_cfg, earlier, tmp_path / "night", incremental=True)
    assert all(Path(f).is_file() for f in (night.memory, night.weights, night.optimizer))
    assert Path(night.optimizer).name == "optimizer.pt"


@pytest.mark.slow
def test_evaluate_refuses_a_cut_new_model_before_spark(cut_champion, monkeypatch):
    from duia_spark.stages import evaluate as evaluate_stage

    monkeypatch.setattr(evaluate_stage, "build_spark_session", _spark_must_not_start)
    args = argparse.Namespace(date=VAL_DAY, version=None, no_promote=True)
    with pytest.raises(ModelFilesError, match=rf"v1: artifacts/weights.pt .*train {VAL_DAY} again"):
        evaluate_stage.run(cut_champion, args)


@pytest.mark.slow
def test_a_version_registered_without_checksums_is_used_with_a_one_line_warning(
    scoring_world, scoring_cfg, tmp_path, capsys
):
    from duia_spark.stages.score import download_champion

    cfg = _register_copy(scoring_cfg, tmp_path, "duia-ranker-old")
    client = MlflowClient()
    mv = client.get_model_version("duia-ranker-old", "1")
    for key in [k for k in mv.tags if k.startswith(TAG_PREFIX)]:
        client.delete_model_version_tag("duia-ranker-old", "1", key)
    for key in [k for k in client.get_run(mv.run_id).data.tags if k.startswith(TAG_PREFIX)]:
        client.delete_tag(mv.run_id, key)
    capsys.readouterr()

    version, files = download_champion(cfg, tmp_path / "champion")
    assert str(version) == "1" and set(files) == set(MODEL_FILES)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "[score] registered model 'duia-ranker-old' v1 has no recorded file checksums "
        "(registered before they were recorded): its files are used unchecked"
    ]
