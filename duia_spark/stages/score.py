"""`duia score --date D`: the champion ranks each user's candidates → gold.scores.

Candidates come from `score.generator` (popular / cluster / table, see
duia_spark/scoring/candidates.py), minus what the user was already exposed to, and get
gold.samples' features as of the start of D. The champion (network + cluster memory)
is checked against the sha256 recorded at registration before Spark starts (a damaged
file fails in one line and gold.scores is left as it was), then broadcast to the Spark
Python workers, which score the candidates in Arrow batches; the top `score.top_k` per
user by the weighted task scores replace D's partition of gold.scores (re-running D
never duplicates).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from duia_spark import tracking
from duia_spark.config import Config
from duia_spark.contract import MODEL_FILES
from duia_spark.data.vocabulary import VOCABULARY_SCHEMA
from duia_spark.lakehouse import Lakehouse
from duia_spark.model_checksums import download_checked_files, registered_uri, rollback_advice
from duia_spark.scoring import candidates as cand
from duia_spark.scoring.inference import (
    ModelPayload,
    assign_user_clusters,
    broadcast_model,
    feature_width_mismatches,
    score_features,
)
from duia_spark.scoring.ranking import effective_task_weights, rank_top_k
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import read_partition, require_rows, run_date

NAME = "score"
HELP = "rank candidates per user with the champion model as of --date → gold.scores"


class NoChampionError(RuntimeError):
    """The registry has no version behind the champion alias."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--generator",
        choices=cand.GENERATORS,
        help="candidate generator (score.generator): popular, cluster or table",
    )
    p.add_argument(
        "--candidate-table",
        help="Delta/Parquet path with user_id, item_id for --generator table (score.candidate_table)",
    )


def _with_arguments(cfg: Config, args: argparse.Namespace) -> Config:
    changes = {}
    if getattr(args, "generator", None):
        changes["generator"] = args.generator
    if getattr(args, "candidate_table", None):
        changes["candidate_table"] = args.candidate_table
    return dataclasses.replace(cfg, score=dataclasses.replace(cfg.score, **changes))


def download_champion(cfg: Config, dst: Path) -> tuple[str, dict[str, Path]]:
    """(version, {weights, cluster_memory, model_config} files) of the champion, each
    checked against the sha256 recorded when it was registered."""
    tracking.configure_mlflow(cfg)
    version = tracking.champion(cfg)
    if version is None:
        raise NoChampionError(
            f"no model version has the alias '{cfg.mlflow.champion_alias}' in "
            f"'{cfg.mlflow.registered_model}' ({cfg.tracking_uri}): train and evaluate first "
            "(`duia train --date D`, then promote a version to champion)"
        )
    files = download_checked_files(
        registered_uri(cfg, version.version),
        dst,
        MODEL_FILES,
        NAME,
        rollback_advice(cfg, version.version),
    )
    return version.version, files


def check_model_fits_features(model_cfg, cfg: Config, version: str) -> None:
    """The champion must read the feature widths this config's samples have."""
    wrong = feature_width_mismatches(model_cfg, cfg)
    if wrong:
        raise ValueError(
            f"champion v{version} was trained on other feature widths ({'; '.join(wrong)}); "
            "score with the config it was trained with, or retrain"
        )


def _optional(lake: Lakehouse, table: str):
    return lake.read(table) if lake.exists(table) else None


def _load_champion(cfg: Config) -> tuple[str, ModelPayload]:
    """The champion's version and payload, its files checked before any Spark work."""
    tmp = Path(tempfile.mkdtemp(prefix="duia-score-"))
    try:
        version, files = download_champion(cfg, tmp)
        payload = ModelPayload.from_files(
            cfg.mlflow.registered_model, version, files, cfg.score.worker_threads
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check_model_fits_features(payload.model_config(), cfg, version)
    return version, payload


def _generator_for(sc, model_cfg, version: str):
    """score.generator, or "popular" when the champion has no user memory to cluster by."""
    if sc.generator == "cluster" and not model_cfg.use_uie:
        # A baseline the evaluate stage's guard put in service has no user memory: the
        # night still scores, from the popular pool.
        print(
            f"[score] score.generator=cluster needs a model with a user memory; the champion "
            f"(version {version}) is variant {model_cfg.variant!r}: candidates from "
            "'popular' tonight"
        )
        return dataclasses.replace(sc, generator="popular")
    return sc


@dataclass(frozen=True)
class _DayInputs:
    """The feature tables as of the start of D that candidates are described with."""

    day: dt.date
    activity: DataFrame
    sequences: DataFrame
    item_stats: DataFrame
    events: DataFrame
    vocabulary: DataFrame
    profiles: DataFrame | None
    items: DataFrame | None

    @classmethod
    def read(cls, lake: Lakehouse, day: dt.date) -> _DayInputs:
        activity = read_partition(lake, "user_activity", "activity_date", day, NAME, "segment")
        require_rows(activity, "user_activity", day, NAME, "segment")
        return cls(
            day,
            activity,
            read_partition(lake, "user_sequences", "as_of_date", day, NAME, "sequences"),
            read_partition(lake, "item_stats", "stats_date", day, NAME, "item-stats"),
            lake.read("events"),
            lake.read_or_empty("vocabulary", VOCABULARY_SCHEMA),
            _optional(lake, "user_profiles"),
            _optional(lake, "item_features"),
        )

    def features(self, pairs: DataFrame, cfg: Config) -> DataFrame:
        return cand.candidate_features(
            pairs, self.day, self.activity, self.sequences, self.item_stats, self.vocabulary,
            self.profiles, self.items, cfg.sequences, cfg.item_stats, cfg.features,
        )  # fmt: skip


def _candidate_pairs(cfg: Config, sc, lake: Lakehouse, inputs: _DayInputs, model, cached: list):
    """(user, item) candidates of the generator, minus what users already saw, capped;
    DataFrames to unpersist afterwards are appended to `cached`."""
    day, events = inputs.day, inputs.events
    users = cand.users_to_score(inputs.activity, events, day, sc)
    if sc.generator == "popular":
        require_rows(inputs.item_stats, "item_stats", day, NAME, "item-stats")
        pool = cand.popular_items(inputs.item_stats, day, sc, cfg.item_stats)
        pairs = cand.popular_candidates(users, pool)
    elif sc.generator == "cluster":
        recent = cand.recent_positive_events(
            events, day, sc.cluster_window_days, cfg.sequences.positive_signals
        )
        # Everyone who can contribute items or receive them, one pseudo-row each.
        members = recent.select("user_id").unionByName(users).distinct()
        no_item = members.withColumn("item_id", F.lit(None).cast("string"))
        clusters = assign_user_clusters(inputs.features(no_item, cfg), model, sc.batch_size)
        cached.append(clusters.persist(StorageLevel.MEMORY_AND_DISK))  # read twice below
        by_cluster = cand.cluster_items(recent, clusters, sc)
        pairs = cand.cluster_candidates(users, clusters, by_cluster)
    else:
        pairs = cand.table_candidates(lake.read_path(sc.candidate_table), users, day)
    unseen = cand.exclude_consumed(pairs, events, day, sc)
    return cand.cap_per_user(unseen, sc.max_candidates_per_user)


def _report(cfg: Config, lake: Lakehouse, day, sc, version: str, weights, t0: float) -> None:
    s = (
        lake.read("scores")
        .where(F.col("score_date") == F.lit(day))
        .agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"))
        .first()
    )
    print(
        f"[score] {day}: {s['users']:,d} users scored, {s['rows']:,d} rows (top {sc.top_k}, "
        f"{sc.generator} candidates) with {cfg.mlflow.registered_model} v{version} "
        f"→ {lake.path('scores')}"
    )
    print(f"[score]   weights {weights}; done in {time.time() - t0:.1f}s")
    if s["users"] == 0:
        print(f"[score]   no user had candidates on {day}: the partition is empty")


def score(cfg: Config, day: dt.date) -> int:
    """Rank each user's candidates with the champion; replace D's partition of
    gold.scores with the top score.top_k per user."""
    cand.check_score_config(cfg.score, cfg.item_stats)
    t0 = time.time()
    version, payload = _load_champion(cfg)
    model_cfg = payload.model_config()
    weights = effective_task_weights(cfg.score.task_weights, model_cfg.tasks)
    sc = _generator_for(cfg.score, model_cfg, version)
    spark = build_spark_session(cfg, "duia-score")
    lake = Lakehouse(spark, cfg)
    inputs = _DayInputs.read(lake, day)
    model = broadcast_model(spark, payload)
    cached = []
    try:
        pairs = _candidate_pairs(cfg, sc, lake, inputs, model, cached)
        features = inputs.features(pairs, cfg)
        task_scores = score_features(features, model, model_cfg.tasks, sc.batch_size)
        scores = rank_top_k(task_scores, weights, sc.top_k, day, version)
        lake.replace_partitions(scores, "scores", "score_date", [day])
    finally:
        for df in cached:
            df.unpersist()
        model.unpersist()
    _report(cfg, lake, day, sc, version, weights, t0)
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return score(_with_arguments(cfg, args), run_date(args, NAME))
