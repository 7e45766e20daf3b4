"""Log a finished training run to MLflow and register it; find the champion to warm-start from."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from duia_spark import tracking
from duia_spark.config import Config
from duia_spark.contract import ARTIFACT_CONFIG, ARTIFACT_MEMORY, ARTIFACT_WEIGHTS
from duia_spark.model.config import ModelConfig
from duia_spark.model_checksums import (
    checksum_tags,
    download_checked_files,
    registered_uri,
    rollback_advice,
)
from duia_spark.training import plots
from duia_spark.training.checkpoint import OPTIMIZER_STATE
from duia_spark.training.incremental import EarlierModel, TrainingPlan
from duia_spark.training.metrics import selection_value
from duia_spark.training.pyfunc import DuiaPyfuncModel, load_ranker, score_frame
from duia_spark.training.residual_gate import served_segments

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # duia_spark/, shipped with the model
OPTIMIZER_FOLDER = "optimizer"  # the run's artifact folder of the optimizer's state


def _date_tag(tags: dict, key: str, fallback: dt.date | None = None) -> dt.date | None:
    value = tags.get(key)
    return dt.date.fromisoformat(value) if value else fallback


def _utc(millis: int | None) -> dt.datetime | None:
    """MLflow's epoch milliseconds as a naive UTC datetime (the lakehouse's clock)."""
    if millis is None:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).replace(tzinfo=None)


def _earlier_version(cfg: Config, variant: str) -> EarlierModel | None:
    """The registered model a night of `variant` continues from: the champion, or — when
    the champion is another variant (a baseline that the evaluate stage's guard put in
    service) — the newest registered version of this variant."""
    version = tracking.champion(cfg)
    if version is not None and version.tags.get("variant", variant) != variant:
        version = tracking.newest_version_of_variant(cfg, variant)
    if version is None or not version.tags.get("data_date"):
        return None
    data_date = _date_tag(version.tags, "data_date")
    started = MlflowClient().get_run(version.run_id).info.start_time if version.run_id else None
    return EarlierModel(
        label=f"version {version.version}",
        uri=registered_uri(cfg, version.version),
        data_date=data_date,
        # a version registered before the tag existed began its own chain
        last_full_retrain=_date_tag(version.tags, "last_full_retrain", data_date),
        version=str(version.version),
        trained_at=_utc(started),
        run_id=version.run_id,
    )


def _earlier_run(cfg: Config, variant: str, day: dt.date) -> EarlierModel | None:
    """The newest finished training run of `variant` dated before `day` (the baselines,
    which are logged but not registered, continue from their own last run)."""
    run = tracking.latest_training_run(cfg, variant, before=str(day))
    if run is None:
        return None
    tags = run.data.tags
    data_date = _date_tag(tags, "data_date")
    return EarlierModel(
        label=f"run {run.info.run_id[:8]}",
        uri=f"runs:/{run.info.run_id}/model",
        data_date=data_date,
        last_full_retrain=_date_tag(tags, "last_full_retrain", data_date),
        trained_at=_utc(run.info.start_time),
        run_id=run.info.run_id,
    )


def earlier_model(cfg: Config, variant: str, day: dt.date, registered: bool) -> EarlierModel | None:
    """What a night of `variant` dated `day` continues from (training/incremental.py):
    the champion's line for the variant the registry serves (`registered`), its own last
    run for a baseline trained beside it."""
    return _earlier_version(cfg, variant) if registered else _earlier_run(cfg, variant, day)


@dataclass(frozen=True)
class StartFiles:
    """The earlier model's files a night starts from (None: not used)."""

    memory: str | None = None
    weights: str | None = None
    optimizer: str | None = None


def download_start_files(
    cfg: Config, earlier: EarlierModel, dst: Path, incremental: bool
) -> StartFiles:
    """The files a night starts from: the earlier model's memories, and for an
    incremental night its weights (checked against the checksums recorded when it was
    logged, model_checksums.py) and its optimizer's state (None for a run logged before
    it was kept)."""
    cold = "or train without it (`duia train --cold-start`)"
    champion = tracking.champion(cfg)
    is_champion = champion is not None and str(champion.version) == earlier.version
    advice = f"{rollback_advice(cfg, earlier.version)}; {cold}" if is_champion else cold
    keys = (ARTIFACT_MEMORY, ARTIFACT_WEIGHTS) if incremental else (ARTIFACT_MEMORY,)
    files = download_checked_files(earlier.uri, dst, keys, "train", advice)
    weights = files.get(ARTIFACT_WEIGHTS)
    optimizer = _optimizer_state(earlier, dst) if incremental else None
    return StartFiles(str(files[ARTIFACT_MEMORY]), str(weights) if weights else None, optimizer)


def _optimizer_state(earlier: EarlierModel, dst: Path) -> str | None:
    if earlier.run_id is None:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=earlier.run_id,
            artifact_path=f"{OPTIMIZER_FOLDER}/{OPTIMIZER_STATE}",
            dst_path=str(dst / "optimizer"),
        )
    except (MlflowException, OSError):
        print(f"[train] {earlier.label} has no optimizer state logged: a fresh optimizer")
        return None
    return str(path)


def _pinned_requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ("torch", "numpy", "pandas", "safetensors", "mlflow", "pyyaml")
    return [f"{p}=={version(p)}" for p in pkgs]


def example_input(model_cfg: ModelConfig, rows: int = 2) -> pd.DataFrame:
    """A tiny frame in the pyfunc's input layout (for the signature and a load check)."""
    rng = np.random.default_rng(0)
    side = (
        {"side_cat": [np.ones(len(model_cfg.side_cat_buckets), np.int32) for _ in range(rows)]}
        if model_cfg.side_cat_buckets
        else {}
    )
    return pd.DataFrame(
        {
            "user_idx": np.ones(rows, np.int32),
            "item_idx": np.ones(rows, np.int32),
            "category_idx": np.ones(rows, np.int32),
            "author_idx": np.ones(rows, np.int32),
            "segment_idx": np.zeros(rows, np.int32),
            "user_dense": [
                rng.random(model_cfg.n_user_dense).astype(np.float32) for _ in range(rows)
            ],
            "item_dense": [
                rng.random(model_cfg.n_item_dense).astype(np.float32) for _ in range(rows)
            ],
            "hist_items": [np.ones(model_cfg.seq_len, np.int32) for _ in range(rows)],
            "pos_items": [np.ones(model_cfg.pos_seq_len, np.int32) for _ in range(rows)],
            **side,
        }
    )


def _metric_names(record: dict, prefix: str = "") -> dict[str, float]:
    """A record's finite numbers as MLflow metrics (`auc/click/low` -> `auc.click.low`)."""
    return {
        f"{prefix}{k.replace('/', '.')}": float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and np.isfinite(v)
    }


def _log_history(history: list[dict], residual_gate: dict, served: dict, wall_s: float) -> None:
    """Per-epoch metrics, the residual gate's evidence and the served validation numbers."""
    for h in history:
        mlflow.log_metrics(
            _metric_names({k: v for k, v in h.items() if k != "epoch"}), step=int(h["epoch"])
        )
    mlflow.log_metric("train_wall_s", wall_s)
    if residual_gate:  # which segments the residual head serves, and the evidence
        mlflow.log_metrics(_metric_names(residual_gate))
        heads = served_segments(residual_gate)
        mlflow.set_tag("residual_head_serves", ",".join(heads) or "none")
    # the registered model's own validation numbers (residual fusion: after the gate)
    mlflow.log_metrics(_metric_names(served, prefix="served."))


def _log_plots(model, model_cfg: ModelConfig, history: list[dict], final: dict, out_dir: Path):
    fig_dir = out_dir / "plots"
    fig_dir.mkdir(exist_ok=True)
    figures = [
        plots.training_curves(history, model_cfg.tasks, fig_dir / "training_curves.png"),
        plots.segment_auc_bars(final, model_cfg.tasks, fig_dir / "segment_auc.png"),
        plots.centre_usage_histogram(model, fig_dir / "centre_usage.png"),
        plots.centre_projection(model, fig_dir / "centre_projection.png"),
    ]
    for f in figures:
        if f is not None:
            mlflow.log_artifact(str(f), "plots")


def _log_pyfunc(model, model_cfg: ModelConfig, files: dict[str, Path]):
    """The pyfunc model with its files as artifacts; -> MLflow's ModelInfo."""
    example = example_input(model_cfg)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=DuiaPyfuncModel(),
        artifacts={k: str(v) for k, v in files.items()},
        code_paths=[str(PACKAGE_DIR)],
        # Stated, not inferred: inference loads the model in a subprocess (slow).
        pip_requirements=_pinned_requirements(),
        signature=infer_signature(example, score_frame(model, example)),
    )


def _register(cfg: Config, model_uri: str, tags: dict[str, str]) -> str:
    mv = mlflow.register_model(model_uri, cfg.mlflow.registered_model)
    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(cfg.mlflow.registered_model, mv.version, k, v)
    return str(mv.version)


def _chain_tags(plan: TrainingPlan, warm_from: EarlierModel | None) -> dict[str, str]:
    """How the run began: full or incremental, the chain's last full retrain, and the
    model whose files it started from (incremental: all of them; full: the memories)."""
    return {
        "training_mode": plan.mode,
        "last_full_retrain": str(plan.last_full_retrain),
        "warm_start_from": warm_from.label if warm_from else "none",
        "warm_start_version": (warm_from.version or "none") if warm_from else "none",
    }


def log_and_register(
    cfg: Config,
    model_cfg: ModelConfig,
    out_dir: Path,
    day: dt.date,
    lineage: dict,
    plan: TrainingPlan,
    warm_from: EarlierModel | None,
    register: bool = True,
    wall_s: float = 0.0,
) -> dict:
    """Log params, metrics, plots, lineage and the pyfunc model; register it. -> ids + metrics."""
    summary = json.loads((out_dir / "history.json").read_text())
    history = summary["history"]
    files = {
        ARTIFACT_WEIGHTS: out_dir / "weights.pt",
        ARTIFACT_MEMORY: out_dir / "cluster_memory.safetensors",
        ARTIFACT_CONFIG: out_dir / "model_config.json",
    }
    model = load_ranker(
        *(str(files[k]) for k in (ARTIFACT_WEIGHTS, ARTIFACT_MEMORY, ARTIFACT_CONFIG))
    )
    final = max(
        history,
        key=lambda h: np.nan_to_num(selection_value(h, cfg.train.selection_metric), nan=-1.0),
    )
    chash = tracking.config_hash(cfg)
    # The files as logged; score, evaluate and the warm start check them before use.
    checksums = checksum_tags(files)
    with mlflow.start_run(run_name=f"{day}-{model_cfg.variant}") as run:
        tracking.log_params(cfg)
        mlflow.log_params(
            {f"data.{k}": v for k, v in model_cfg.to_dict().items() if k.startswith("n_")}
        )
        mlflow.set_tags(
            {
                "kind": "training",
                "data_date": str(day),
                "variant": model_cfg.variant,
                "config_hash": chash,
                "git_commit": tracking.git_commit(),
                **_chain_tags(plan, warm_from),
                **{f"lineage.{k}": str(v) for k, v in lineage.items()},
                **checksums,
            }
        )
        # residual fusion: the gate's evidence, and the numbers after it
        _log_history(
            history, summary.get("residual_gate", {}), summary.get("served_validation", {}), wall_s
        )
        mlflow.log_dict({"history": history, "lineage": lineage}, "history.json")
        _log_plots(model, model_cfg, history, final, out_dir)
        mlflow.log_artifact(str(files[ARTIFACT_MEMORY]), "cluster_memory")
        if (out_dir / OPTIMIZER_STATE).exists():  # the next incremental night continues it
            mlflow.log_artifact(str(out_dir / OPTIMIZER_STATE), OPTIMIZER_FOLDER)
        info = _log_pyfunc(model, model_cfg, files)
        version = None
        if register:
            tags = {
                "data_date": str(day),
                "variant": model_cfg.variant,
                "config_hash": chash,
                "run_id": run.info.run_id,
                "training_mode": plan.mode,
                "last_full_retrain": str(plan.last_full_retrain),
                **checksums,
            }
            version = _register(cfg, info.model_uri, tags)
    return {
        "run_id": run.info.run_id,
        "version": version,
        "metrics": final,
        "model_uri": info.model_uri,
    }
