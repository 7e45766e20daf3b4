"""`duia evaluate --date D`: the new model vs the champion vs baselines on D's samples,
a simulated feed against ground truth, and the quality gate that moves `champion`."""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from duia_spark import tracking
from duia_spark.config import Config
from duia_spark.evaluation.gate import GateResult, GuardResult, baseline_guard, quality_gate
from duia_spark.evaluation.ranking_metrics import ranking_metrics
from duia_spark.evaluation.report import comparison_chart, format_report
from duia_spark.evaluation.simulation import simulate_feeds, with_ground_truth
from duia_spark.lakehouse import Lakehouse
from duia_spark.model_checksums import rollback_advice
from duia_spark.scoring.inference import (
    checked_payload,
    feature_width_mismatches,
    score_side_by_side,
    side_by_side_column,
)
from duia_spark.session import build_spark_session
from duia_spark.training.dataset import available_input_columns, label_column
from duia_spark.training.split import temporal_split

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


@dataclass(frozen=True)
class ServingDecision:
    """Which registered version serves after this evaluation, and why."""

    version: str | None  # the version that serves (None: no champion at all)
    promote: bool  # move the champion alias to `version`
    headline: str  # one line for the console
    reason: str  # the full why, for the report, MLflow tags and the version's tags

    @property
    def summary(self) -> str:
        return f"serving: {self.headline}\n{self.reason}"


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


def _serving_decision(
    cfg: Config,
    client: MlflowClient,
    models: dict,
    version: str,
    candidate: str,
    guard: GuardResult | None,
    gate: GateResult,
    args: argparse.Namespace,
) -> ServingDecision:
    champ = models.get("champion", (None, None))[1]
    champ_version = champ[1:] if champ else None
    keep = f"{champ} keeps serving" if champ else "no model serves yet"
    gate_why = "\n".join(f"  gate: {r}" for r in gate.reasons)
    if candidate == "new":
        if not gate.passed:
            return ServingDecision(
                champ_version, False, f"gate FAILED: {keep}; v{version} not promoted", gate_why
            )
        if args.no_promote:
            return ServingDecision(
                champ_version, False, f"gate passed, --no-promote: {keep}", gate_why
            )
        held = "" if guard is None else "\n".join(f"  guard: {r}" for r in guard.reasons) + "\n"
        return ServingDecision(
            version,
            True,
            f"gate passed: {cfg.mlflow.registered_model} v{version} is now "
            f"'{cfg.mlflow.champion_alias}'",
            held + gate_why,
        )
    lost = "\n".join(f"  guard: {r}" for r in guard.reasons if guard.winner in r)
    why = f"the same night's {candidate} baseline beat v{version} ({cfg.model.variant}):\n{lost}"
    if not gate.passed or args.no_promote:
        step = "--no-promote" if gate.passed else f"and the {candidate} baseline failed the gate"
        return ServingDecision(
            champ_version,
            False,
            f"v{version} lost to the {candidate} baseline {step}: {keep}",
            why + "\n" + gate_why,
        )
    uri, _ = models[candidate]
    baseline_version = register_baseline(cfg, client, uri, candidate, args.date, why)
    return ServingDecision(
        baseline_version,
        True,
        f"v{version} lost to the {candidate} baseline: {candidate} registered as "
        f"v{baseline_version} and is now '{cfg.mlflow.champion_alias}'",
        why + "\n" + gate_why,
    )


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("evaluate needs --date D")
    day = args.date
    tracking.configure_mlflow(cfg)
    models, version = find_models(cfg, day, args.version)
    with tempfile.TemporaryDirectory() as tmp:  # each model's files checked before Spark
        payloads = {
            label: checked_payload(
                uri, label, f"{tmp}/{label}", NAME, _repair_advice(cfg, label, uri, day)
            )
            for label, (uri, _) in models.items()
        }
    spark = build_spark_session(cfg, "duia-evaluate")
    lake = Lakehouse(spark, cfg)
    tasks = list(cfg.model.tasks)
    label_cols = [c for t in tasks for c in label_column(t)]
    samples = lake.read("samples")
    # The run's validation window (train.validation_days; one day, D, by default): the
    # rows the new model chose its epoch on are the rows it is compared on.
    split = temporal_split(day, cfg.train.train_days, cfg.train.validation_days)
    scored = split.validation_rows(samples).select(
        "user_id",
        "item_id",
        "sample_date",
        "segment",
        "duration_ms",
        *available_input_columns(samples.columns),
        *label_cols,
    )
    for label in incompatible_models(payloads, cfg):
        if label == "new":
            raise ValueError(
                f"v{version} was trained on other feature widths than the samples of "
                f"{split.describe_validation()} "
                "(see above): retrain it"
            )
        del models[label], payloads[label]
    scored = score_side_by_side(spark, scored, payloads, tasks, cfg.score.batch_size).cache()
    try:
        n = scored.count()
        if n == 0:
            raise ValueError(split.no_samples_message("validation"))
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
    baselines = {b: metrics[b] for b in cfg.evaluate.baselines if b in metrics}
    guard = (
        baseline_guard(
            metrics["new"],
            baselines,
            list(cfg.evaluate.guard_metrics),
            list(cfg.evaluate.guard_tasks or tasks),
            cfg.evaluate.guard_tolerance_map,
            cfg.evaluate.guard_min_positives,
        )
        if cfg.evaluate.baseline_guard
        else None
    )
    candidate = "new" if guard is None or guard.held else guard.winner
    gate = quality_gate(
        metrics[candidate],
        metrics.get("champion"),
        cfg.evaluate.gate_metric,
        cfg.evaluate.gate_task,
        cfg.evaluate.gate_tolerances,
        name="new model" if candidate == "new" else f"{candidate} baseline",
    )
    labels = {k: f"{k} ({d})" for k, (_, d) in models.items()}
    window = split.describe_validation()
    report = format_report(
        day if split.validation_days == 1 else f"{day} (validation days {window})",
        labels,
        metrics,
        feeds,
        tasks,
        gate,
        guard,
    )
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    serving = _serving_decision(cfg, client, models, version, candidate, guard, gate, args)
    report += "\n\n" + serving.summary
    print(report)
    with mlflow.start_run(run_name=f"evaluate-{day}") as run:
        mlflow.set_tags(
            {
                "kind": "evaluation",
                "data_date": str(day),
                "validation_dates": window,
                "evaluated_version": version,
                "gate": "passed" if gate.passed else "failed",
                "guard": "off" if guard is None else ("held" if guard.held else guard.winner),
                "serving_version": serving.version or "none",
                "serving_reason": serving.reason[:5000],
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
    new_passed = candidate == "new" and gate.passed
    client.set_model_version_tag(name, version, "gate", "passed" if new_passed else "failed")
    client.set_model_version_tag(name, version, "evaluation_run", run.info.run_id)
    if guard is not None and not guard.held:
        client.set_model_version_tag(name, version, "lost_to_baseline", guard.winner)
    if serving.promote:
        client.set_registered_model_alias(name, cfg.mlflow.champion_alias, serving.version)
        client.set_model_version_tag(name, serving.version, "serving_reason", serving.reason[:5000])
    print(f"[evaluate] {serving.headline}")
    return 0
