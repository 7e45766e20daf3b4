"""MLflow: where runs go, how a trained ranker is logged and registered, and how the
current champion (model + cluster memory) is found. Only the driver calls this —
sqlite locks under concurrent writers."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from duia_spark.config import SOURCE_CHECKOUT, Config, config_as_flat_dict


def configure_mlflow(cfg: Config) -> str:
    """Point MLflow at the configured store; create the experiment; -> experiment id."""
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = cfg.mlflow.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        root = cfg.resolve_path(cfg.mlflow.artifact_root)
        location = root if "://" in root else Path(root).as_uri()
        exp_id = mlflow.create_experiment(name, artifact_location=f"{location}/{name}")
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def config_hash(cfg: Config) -> str:
    flat = json.dumps(config_as_flat_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(flat.encode()).hexdigest()[:12]


def git_commit() -> str:
    if SOURCE_CHECKOUT is None:  # an installed wheel: no checkout to ask
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=SOURCE_CHECKOUT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def champion(cfg: Config):
    """The registered version behind the champion alias, or None."""
    client = MlflowClient()
    try:
        return client.get_model_version_by_alias(
            cfg.mlflow.registered_model, cfg.mlflow.champion_alias
        )
    except MlflowException:
        return None


def newest_version_of_variant(cfg: Config, variant: str):
    """The newest registered version whose `variant` tag is `variant`, or None."""
    client = MlflowClient()
    versions = [
        v
        for v in client.search_model_versions(f"name='{cfg.mlflow.registered_model}'")
        if v.tags.get("variant") == variant
    ]
    return max(versions, key=lambda v: int(v.version)) if versions else None


def download_model_artifacts(cfg: Config, version: str, dst: str) -> Path:
    """Download a registered version's model folder; -> the folder."""
    uri = f"models:/{cfg.mlflow.registered_model}/{version}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst))


def latest_training_run(
    cfg: Config, variant: str, data_date: str | None = None, before: str | None = None
):
    """The newest training run of `variant` in the configured experiment, or None: for
    `data_date` when given; with `before` (an ISO date), the run of the latest data date
    before it (the newest run of that date)."""
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        return None
    where = f"tags.variant = '{variant}' and tags.kind = 'training'"
    if data_date is not None:
        where = f"tags.data_date = '{data_date}' and {where}"
    runs = mlflow.search_runs(
        [exp.experiment_id],
        filter_string=where,
        order_by=["start_time DESC"],
        max_results=1 if before is None else 1000,
        output_format="list",
    )
    if before is not None:  # ISO dates compare as strings; the first of a date is its newest
        dated = [r for r in runs if r.data.tags.get("data_date", "") < before]
        runs = sorted(dated, key=lambda r: r.data.tags["data_date"], reverse=True)
    return runs[0] if runs else None


def artifact_file(model_dir: Path, name: str) -> Path:
    """A logged pyfunc artifact by its key (weights, cluster_memory, model_config).

    The key is looked up in the MLmodel file (the files keep their own names, e.g.
    weights → artifacts/model_state.pt); a file named after the key is the fallback."""
    import yaml

    mlmodel = Path(model_dir) / "MLmodel"
    if mlmodel.exists():
        flavor = yaml.safe_load(mlmodel.read_text()).get("flavors", {}).get("python_function", {})
        entry = (flavor.get("artifacts") or {}).get(name)
        if entry and (Path(model_dir) / entry["path"]).exists():
            return Path(model_dir) / entry["path"]
    matches = sorted((Path(model_dir) / "artifacts").glob(f"{name}*"))
    if not matches:
        raise FileNotFoundError(f"{model_dir}: model has no '{name}' artifact")
    return matches[0]


def log_params(cfg: Config) -> None:
    params = {
        k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
        for k, v in config_as_flat_dict(cfg).items()
    }
    items = list(params.items())
    for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        mlflow.log_params(dict(items[i : i + 100]))
