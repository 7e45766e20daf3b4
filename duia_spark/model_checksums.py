"""A registered model's files, checked before they are used.

Registration records the sha256 of each file the ranker is loaded from (weights,
cluster memory, ModelConfig) as tags `sha256.<file>` on its run and on its model
version. `duia score`, `duia evaluate` and the training warm start download a model
with `download_checked_files`, which hashes each file on the driver, before any Spark
work, and refuses one that differs in a single line: the model, its version, the file,
both hashes, and what to do. A version registered before hashes were recorded is used
with a one-line warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from duia_spark.config import Config
from duia_spark.tracking import artifact_file

TAG_PREFIX = "sha256."
SHOWN_DIGITS = 12  # of a hash, in messages


class ModelFilesError(RuntimeError):
    """A model file in the artifact store is missing or differs from the registered one."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_tags(files: Mapping[str, Path]) -> dict[str, str]:
    """{"sha256.<key>": hex digest} of a model's files by artifact key, for its tags."""
    return {f"{TAG_PREFIX}{key}": file_sha256(Path(path)) for key, path in files.items()}


def recorded_checksums(tags: Mapping[str, str]) -> dict[str, str]:
    """{key: hex digest} from a run's or a version's tags (empty: none recorded)."""
    return {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}


def registered_uri(cfg: Config, version: str) -> str:
    return f"models:/{cfg.mlflow.registered_model}/{version}"


def _model_and_checksums(uri: str) -> tuple[str, dict[str, str]]:
    """(how messages name the model, its recorded checksums) for `models:/<name>/<version>`
    or `runs:/<run id>/<path>`. A version without hashes of its own falls back to its
    run's (a run registered after it was logged, as the baseline guard does)."""
    client = MlflowClient()
    if uri.startswith("models:/"):
        name, version = uri.removeprefix("models:/").rsplit("/", 1)
        mv = client.get_model_version(name, version)
        sums = recorded_checksums(mv.tags)
        if not sums and mv.run_id:
            sums = recorded_checksums(client.get_run(mv.run_id).data.tags)
        return f"registered model '{name}' v{version}", sums
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        return f"the model of run {run_id}", recorded_checksums(client.get_run(run_id).data.tags)
    return uri, {}


def rollback_advice(cfg: Config, broken: str) -> str:
    """What to do when the champion (version `broken`) is damaged: point the alias back
    to the newest other version that passed the gate (else the one before it)."""
    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias

    def preference(v) -> tuple[bool, bool, int]:  # passed the gate, older, newest
        return v.tags.get("gate") == "passed", int(v.version) < int(broken), int(v.version)

    versions = MlflowClient().search_model_versions(f"name='{name}'")
    others = sorted((v for v in versions if str(v.version) != str(broken)), key=preference)
    target = str(others[-1].version) if others else "<a good version>"
    return (
        f"point the alias '{alias}' back to a good version (MLflow UI, or `python -c \"from "
        f"mlflow import MlflowClient; MlflowClient('{cfg.tracking_uri}')"
        f".set_registered_model_alias('{name}', '{alias}', '{target}')\"`), or train and "
        "promote a new one"
    )


def check_files(
    what: str, expected: Mapping[str, str], files: Mapping[str, Path], model_dir: Path, advice: str
) -> None:
    """Raise ModelFilesError for the first file whose sha256 is not the recorded one."""
    for key, path in files.items():
        want = expected.get(key)
        if want is None:
            continue
        got = file_sha256(path)
        if got != want:
            size = Path(path).stat().st_size
            raise ModelFilesError(
                f"{what}: {Path(path).relative_to(model_dir)} is not the file that was "
                f"registered (sha256 {got[:SHOWN_DIGITS]}, {size:,} bytes; registered "
                f"{want[:SHOWN_DIGITS]}): {advice}"
            )


def download_checked_files(
    uri: str, dst: str | Path, keys: Iterable[str], stage: str, advice: str
) -> dict[str, Path]:
    """Download the model at `uri` into `dst` -> {artifact key: local file} for `keys`,
    each checked against the sha256 recorded when the model was logged."""
    what, expected = _model_and_checksums(uri)
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    files = {}
    for key in keys:
        try:
            files[key] = artifact_file(model_dir, key)
        except FileNotFoundError as e:
            raise ModelFilesError(f"{what}: its '{key}' file is missing: {advice}") from e
    if not any(key in expected for key in files):
        print(
            f"[{stage}] {what} has no recorded file checksums (registered before they were "
            "recorded): its files are used unchecked"
        )
        return files
    check_files(what, expected, files, model_dir, advice)
    return files
