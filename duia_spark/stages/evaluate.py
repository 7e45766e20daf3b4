"""`duia evaluate --date D`: the new model vs the champion vs baselines on D's samples,
a simulated feed against ground truth, and the quality gate that moves `champion`."""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from pyspark.sql import functions as F

from duia_spark import tracking
from duia_spark.config import Config
from duia_spark.evaluation.gate import quality_gate
from duia_spark.evaluation.ranking_metrics import ranking_metrics
from duia_spark.evaluation.report import comparison_chart, format_report
from duia_spark.evaluation.simulation import simulate_feeds, with_ground_truth
from duia_spark.lakehouse import Lakehouse
from duia_spark.scoring.inference import (
    feature_width_mismatches,
    score_side_by_side,
    side_by_side_column,
)
from duia_spark.session import build_spark_session
from duia_spark.training.dataset import ARRAY_COLUMNS, ID_COLUMNS, label_column

NAME = "evaluate"
HELP = "evaluate the new model against the champion and baselines; gate the champion alias"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", help="registered version to evaluate (default: newest for --date)")
    p.add_argument("--no-promote", action="store_true", help="report only; never move the alias")


def _metric_key(model: str, key: str) -> str:
    return f"{model.replace('+', '_')}.{key.replace('/', '.')}"


def find_models(cfg: Config, day, version: str | None) -> dict[str, tuple[str, str]]:
    """{label: (model_uri, description)}: new, champion and baselines of `day`."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    if version is None:
        candidates = [
            v
            for v in client.search_model_versions(f"name='{name}'")
            if v.tags.get("data_date") == str(day) and v.tags.get("variant") == cfg.model.variant
        ]
        if not candidates:
            raise ValueError(
                f"no registered {name} version for {day} ({cfg.model.variant}); run `duia train --date {day}` first"
            )
        version = str(max(int(v.version) for v in candidates))
    models = {"new": (f"models:/{name}/{version}", f"v{version}")}
    champ = tracking.champion(cfg)
    if champ is not None and str(champ.version) != str(version):
        models["champion"] = (f"models:/{name}/{champ.version}", f"v{champ.version}")
    for variant in cfg.evaluate.baselines:
        if variant == cfg.model.variant:
            continue
        run = tracking.latest_training_run(cfg, variant, str(day))
        if run is not None:
            models[variant] = (f"runs:/{run.info.run_id}/model", f"run {run.info.run_id[:8]}")
        else:
            print(
                f"[evaluate] baseline {variant} not trained for {day}: skipped (train it with --variant {variant} --no-register)"
            )
    return models, version


def incompatible_models(payloads: dict, cfg: Config) -> list[str]:
    """Labels of models trained on other feature widths than this config's samples (a
    champion from before a feature was added, say): they cannot score these samples."""
    out = []
    for label, payload in payloads.items():
        wrong = feature_width_mismatches(payload.model_config(), cfg)
        if wrong:
            print(
                f"[evaluate] {label} was trained on other feature widths ({'; '.join(wrong)}): "
                "it cannot score these samples and is left out of the comparison"
            )
            out.append(label)
    return out


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("evaluate needs --date D")
    day = args.date
    spark = build_spark_session(cfg, "duia-evaluate")
    lake = Lakehouse(spark, cfg)
    tracking.configure_mlflow(cfg)
    models, version = find_models(cfg, day, args.version)
    tasks = list(cfg.model.tasks)
    label_cols = [c for t in tasks for c in label_column(t)]
    scored = (
        lake.read("samples")
        .where(F.col("sample_date") == day)
        .select(
            "user_id", "item_id", "segment", "duration_ms", *ID_COLUMNS, *ARRAY_COLUMNS, *label_cols
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        payloads = {
            label: tracking.model_payload(uri, label, f"{tmp}/{label}")
            for label, (uri, _) in models.items()
        }
    for label in incompatible_models(payloads, cfg):
        if label == "new":
            raise ValueError(
                f"v{version} was trained on other feature widths than {day}'s samples "
                "(see above): retrain it"
            )
        del models[label], payloads[label]
    scored = score_side_by_side(spark, scored, payloads, tasks, cfg.score.batch_size).cache()
    try:
        n = scored.count()
        if n == 0:
            raise ValueError(f"no samples for {day}: run `duia samples --date {day}`")
        metrics = ranking_metrics(scored, list(models), tasks, cfg.evaluate.auc_bins)
        feeds = None
        if cfg.evaluate.truth_dir:
            truth = Path(cfg.resolve_path(cfg.evaluate.truth_dir))
            truth_scored = with_ground_truth(
                scored,
                spark.read.parquet(str(truth / "users.parquet")),
                spark.read.parquet(str(truth / "items.parquet")),
            )
            rank_task = cfg.evaluate.simulation_rank_task
            feeds = {
                (r["model"], r["segment"]): r.asDict()
                for r in simulate_feeds(
                    truth_scored,
                    {m: side_by_side_column(m, rank_task) for m in models},
                    cfg.evaluate.feed_size,
                ).collect()  # models x 4 segments
            }
    finally:
        scored.unpersist()
    gate = quality_gate(
        metrics["new"],
        metrics.get("champion"),
        cfg.evaluate.gate_metric,
        cfg.evaluate.gate_task,
        cfg.evaluate.gate_tolerances,
    )
    labels = {k: f"{k} ({d})" for k, (_, d) in models.items()}
    report = format_report(day, labels, metrics, feeds, tasks, gate)
    print(report)
    client = MlflowClient()
    with mlflow.start_run(run_name=f"evaluate-{day}") as run:
        mlflow.set_tags(
            {
                "kind": "evaluation",
                "data_date": str(day),
                "evaluated_version": version,
                "gate": "passed" if gate.passed else "failed",
            }
        )
        flat = {}
        for m, values in metrics.items():
            for k, v in values.items():
                if not math.isnan(v):
                    flat[_metric_key(m, k)] = v
        if feeds:
            for (m, seg), row in feeds.items():
                flat[_metric_key(m, f"sim/uvc/{seg}")] = row["uvc"]
                flat[_metric_key(m, f"sim/udt_s/{seg}")] = row["udt_s"]
        mlflow.log_metrics(flat)
        mlflow.log_text(report, "evaluation_report.txt")
        with tempfile.TemporaryDirectory() as tmp:
            chart = comparison_chart(metrics, feeds, tasks, Path(tmp) / "evaluation.png")
            mlflow.log_artifact(str(chart))
    name = cfg.mlflow.registered_model
    client.set_model_version_tag(name, version, "gate", "passed" if gate.passed else "failed")
    client.set_model_version_tag(name, version, "evaluation_run", run.info.run_id)
    if gate.passed and not args.no_promote:
        client.set_registered_model_alias(name, cfg.mlflow.champion_alias, version)
        print(f"[evaluate] gate passed: {name} v{version} is now '{cfg.mlflow.champion_alias}'")
    elif not gate.passed:
        champ = models.get("champion", ("", "none"))[1]
        print(f"[evaluate] gate FAILED: {champ} keeps serving; v{version} not promoted")
    return 0
