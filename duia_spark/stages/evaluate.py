"""`duia evaluate --date D`: the new model vs the champion vs baselines on D's samples,
a simulated feed against ground truth, and the quality gate that moves `champion`."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from duia_spark import tracking
from duia_spark.config import Config
from duia_spark.contract import available_input_columns, label_column, side_by_side_column
from duia_spark.evaluation.promotion import Names, Verdict, judge, serving_decision
from duia_spark.evaluation.ranking_metrics import ranking_metrics
from duia_spark.evaluation.report import comparison_chart, format_report
from duia_spark.evaluation.simulation import simulate_feeds, with_ground_truth
from duia_spark.lakehouse import Lakehouse
from duia_spark.model_checksums import rollback_advice
from duia_spark.scoring.inference import (
    checked_payload,
    feature_width_mismatches,
    score_side_by_side,
)
from duia_spark.session import build_spark_session
from duia_spark.training.split import TemporalSplit, temporal_split

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


def _repair_advice(cfg: Config, label: str, uri: str, day) -> str:
    """What to do when a compared model's files are damaged."""
    if label == "champion":
        return rollback_advice(cfg, uri.rsplit("/", 1)[1])
    if label == "new":
        return f"train {day} again (`duia train --date {day}`)"
    return f"train the baseline again (`duia train --date {day} --variant {label} --no-register`)"


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


def register_baseline(cfg: Config, client: MlflowClient, run_uri: str, variant: str, day, why: str):
    """Register a baseline run's model as a version of the ranker (once per run: a re-run
    of evaluate finds the version it registered before); -> the version string."""
    name = cfg.mlflow.registered_model
    run_id = run_uri.split("/")[1]
    for v in client.search_model_versions(f"name='{name}'"):
        if v.tags.get("run_id") == run_id:
            return str(v.version)
    mv = mlflow.register_model(run_uri, name)
    tags = {
        "data_date": str(day),
        "variant": variant,
        "run_id": run_id,
        "config_hash": tracking.config_hash(cfg),
        "registered_by": "baseline_guard",
        "promoted_because": why[:5000],
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, mv.version, k, v)
    return str(mv.version)


@dataclass(frozen=True)
class _Measured:
    """The compared models' metrics on the validation window, and their simulated feeds."""

    metrics: dict[str, dict[str, float]]
    feeds: dict | None  # (model, segment) -> UVC/UDT row; None without ground truth


def _checked_payloads(cfg: Config, models: dict, day: dt.date) -> dict:
    """Each compared model downloaded and its files checked, before any Spark work."""
    with tempfile.TemporaryDirectory() as tmp:
        return {
            label: checked_payload(
                uri, label, f"{tmp}/{label}", NAME, _repair_advice(cfg, label, uri, day)
            )
            for label, (uri, _) in models.items()
        }


def _validation_rows(cfg: Config, lake: Lakehouse, split: TemporalSplit):
    """The run's validation window (train.validation_days; one day, D, by default): the
    rows the new model chose its epoch on are the rows it is compared on."""
    samples = lake.read("samples")
    label_cols = [c for t in cfg.model.tasks for c in label_column(t)]
    return split.validation_rows(samples).select(
        "user_id",
        "item_id",
        "sample_date",
        "segment",
        "duration_ms",
        *available_input_columns(samples.columns),
        *label_cols,
    )


def _simulated_feeds(cfg: Config, spark, scored, models: dict) -> dict | None:
    if not cfg.evaluate.truth_dir:
        return None
    truth = Path(cfg.resolve_path(cfg.evaluate.truth_dir))
    truth_scored = with_ground_truth(
        scored,
        spark.read.parquet(str(truth / "users.parquet")),
        spark.read.parquet(str(truth / "items.parquet")),
    )
    rank_task = cfg.evaluate.simulation_rank_task
    rows = simulate_feeds(
        truth_scored,
        {m: side_by_side_column(m, rank_task) for m in models},
        cfg.evaluate.feed_size,
    ).collect()  # models x 4 segments
    return {(r["model"], r["segment"]): r.asDict() for r in rows}


def _measure(cfg: Config, spark, rows, payloads: dict, split: TemporalSplit) -> _Measured:
    """Score the rows with every model side by side; AUC/GAUC per task and segment, and
    the simulated feed where the generator's truth is known."""
    tasks = list(cfg.model.tasks)
    scored = score_side_by_side(spark, rows, payloads, tasks, cfg.score.batch_size).cache()
    try:
        if scored.count() == 0:
            raise ValueError(split.no_samples_message("validation"))
        metrics = ranking_metrics(scored, list(payloads), tasks, cfg.evaluate.auc_bins)
        return _Measured(metrics, _simulated_feeds(cfg, spark, scored, payloads))
    finally:
        scored.unpersist()


def _flat_metrics(measured: _Measured) -> dict[str, float]:
    flat = {}
    for m, values in measured.metrics.items():
        for k, v in values.items():
            if not math.isnan(v):
                flat[_metric_key(m, k)] = v
    for (m, seg), row in (measured.feeds or {}).items():
        flat[_metric_key(m, f"sim/uvc/{seg}")] = row["uvc"]
        flat[_metric_key(m, f"sim/udt_s/{seg}")] = row["udt_s"]
    return flat


def _log_evaluation(
    cfg: Config,
    day,
    window: str,
    version: str,
    measured: _Measured,
    verdict: Verdict,
    report,
    serving,
) -> str:
    """The evaluation's MLflow run (tags, metrics, report, chart); -> its run id."""
    guard = verdict.guard
    with mlflow.start_run(run_name=f"evaluate-{day}") as run:
        mlflow.set_tags(
            {
                "kind": "evaluation",
                "data_date": str(day),
                "validation_dates": window,
                "evaluated_version": version,
                "gate": "passed" if verdict.gate.passed else "failed",
                "guard": "off" if guard is None else ("held" if guard.held else guard.winner),
                "serving_version": serving.version or "none",
                "serving_reason": serving.reason[:5000],
            }
        )
        mlflow.log_metrics(_flat_metrics(measured))
        mlflow.log_text(report, "evaluation_report.txt")
        with tempfile.TemporaryDirectory() as tmp:
            chart = comparison_chart(
                measured.metrics,
                measured.feeds,
                list(cfg.model.tasks),
                Path(tmp) / "evaluation.png",
            )
            mlflow.log_artifact(str(chart))
    return run.info.run_id


def _apply(cfg: Config, client, version: str, verdict: Verdict, serving, run_id: str) -> None:
    """Tag the evaluated version and move the champion alias as decided."""
    name = cfg.mlflow.registered_model
    new_passed = verdict.candidate == "new" and verdict.gate.passed
    client.set_model_version_tag(name, version, "gate", "passed" if new_passed else "failed")
    client.set_model_version_tag(name, version, "evaluation_run", run_id)
    if verdict.guard is not None and not verdict.guard.held:
        client.set_model_version_tag(name, version, "lost_to_baseline", verdict.guard.winner)
    if serving.promote:
        client.set_registered_model_alias(name, cfg.mlflow.champion_alias, serving.version)
        client.set_model_version_tag(name, serving.version, "serving_reason", serving.reason[:5000])


def _decide(cfg: Config, client, models: dict, version: str, verdict: Verdict, day, promote):
    """The serving decision; a baseline that serves is registered first."""
    champ = models.get("champion", (None, None))[1]
    names = Names(cfg.mlflow.registered_model, cfg.mlflow.champion_alias, cfg.model.variant)
    serving = serving_decision(verdict, version, champ[1:] if champ else None, promote, names)
    if serving.register_baseline:
        label = serving.register_baseline
        baseline = register_baseline(cfg, client, models[label][0], label, day, serving.reason)
        serving = serving.baseline_registered(baseline)
    return serving


def evaluate(cfg: Config, day: dt.date, version: str | None = None, promote: bool = True) -> int:
    """Compare the new model of D (or `version`) with the champion and the night's
    baselines on the validation window; promote by the guard and the gate."""
    tracking.configure_mlflow(cfg)
    models, version = find_models(cfg, day, version)
    payloads = _checked_payloads(cfg, models, day)
    spark = build_spark_session(cfg, "duia-evaluate")
    lake = Lakehouse(spark, cfg)
    split = temporal_split(day, cfg.train.train_days, cfg.train.validation_days)
    window = split.describe_validation()
    for label in incompatible_models(payloads, cfg):
        if label == "new":
            raise ValueError(
                f"v{version} was trained on other feature widths than the samples of "
                f"{window} (see above): retrain it"
            )
        del models[label], payloads[label]
    measured = _measure(cfg, spark, _validation_rows(cfg, lake, split), payloads, split)
    verdict = judge(measured.metrics, cfg.evaluate, list(cfg.model.tasks))
    report = format_report(
        day if split.validation_days == 1 else f"{day} (validation days {window})",
        {k: f"{k} ({d})" for k, (_, d) in models.items()},
        measured.metrics,
        measured.feeds,
        list(cfg.model.tasks),
        verdict.gate,
        verdict.guard,
    )
    client = MlflowClient()
    serving = _decide(cfg, client, models, version, verdict, day, promote)
    report += "\n\n" + serving.summary
    print(report)
    run_id = _log_evaluation(cfg, day, window, version, measured, verdict, report, serving)
    _apply(cfg, client, version, verdict, serving, run_id)
    print(f"[evaluate] {serving.headline}")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("evaluate needs --date D")
    return evaluate(cfg, args.date, args.version, promote=not args.no_promote)
