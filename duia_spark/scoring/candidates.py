"""Candidates to score on day D: which users, which items, and their features as of D.

Generators (`score.generator`), each giving (user_id, item_id, prior) rows where a
higher `prior` means "the generator likes it more" (used only to cap the list):

- popular: one pool for everyone — the items of silver.item_stats as of D ranked by
  a count over a trailing window (exposures, or a positive signal's count).
- cluster: GHCA's user clusters as a collaborative filter. Every user with features
  as of D is assigned to its level-1 centre by the champion model (the same query
  tower and memory the ranker uses); each cluster's candidates are the items its
  members consumed positively in the last N days, ranked by how many positive
  behaviours they got. A user draws from the pool of its own cluster. Membership is
  the one as of D for everybody (not as of each positive event): cheap, and it is
  the clustering the model will score with.
- table: a supplied table of (user_id, item_id) pairs.

Items the user was already exposed to before D are removed, the list is capped per
user, and the survivors become pseudo-exposures at the start of D (labels null) that
go through `assemble_samples`, so candidates get exactly gold.samples' features.
Pure DataFrame → DataFrame.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import (
    ConfigError,
    FeaturesConfig,
    ItemStatsConfig,
    ScoreConfig,
    SequenceConfig,
)
from duia_spark.contract import available_input_columns
from duia_spark.data.samples import DayFeatures, assemble_samples
from duia_spark.data.schema import DURATIONS, SIGNALS

GENERATORS = ("popular", "cluster", "table")
USER_SCOPES = ("active", "all")


def check_score_config(cfg: ScoreConfig, stats_cfg: ItemStatsConfig) -> None:
    """Value checks the type-checked loader cannot do; fail naming the key."""
    if cfg.generator not in GENERATORS:
        raise ConfigError(f"score.generator: expected one of {GENERATORS}, got {cfg.generator!r}")
    if cfg.users not in USER_SCOPES:
        raise ConfigError(f"score.users: expected one of {USER_SCOPES}, got {cfg.users!r}")
    metrics = ("exposures", *stats_cfg.rate_signals)
    if cfg.generator == "popular":
        if cfg.popular_metric not in metrics:
            raise ConfigError(
                f"score.popular_metric: expected one of {metrics} "
                f"(item_stats.rate_signals), got {cfg.popular_metric!r}"
            )
        if cfg.popular_window_days not in stats_cfg.windows_days:
            raise ConfigError(
                f"score.popular_window_days: {cfg.popular_window_days} is not one of "
                f"item_stats.windows_days {stats_cfg.windows_days}"
            )
    if cfg.generator == "table" and not cfg.candidate_table:
        raise ConfigError("score.candidate_table: the table generator needs a table path")
    positive = (
        "active_window_days", "cluster_window_days", "popular_items", "cluster_items",
        "max_candidates_per_user", "top_k", "batch_size",
    )  # fmt: skip
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"score.{key}: must be >= 1")


def _days_before(day: dt.date, n: int) -> dt.date:
    return day - dt.timedelta(days=n)


def users_to_score(
    activity: DataFrame, events: DataFrame, day: dt.date, cfg: ScoreConfig
) -> DataFrame:
    """(user_id) of the users scored on `day`: every user in silver.user_activity as of
    `day`, or ("active") those of them with events in the last `active_window_days`."""
    users = activity.where(F.col("activity_date") == F.lit(day)).select("user_id").distinct()
    if cfg.users == "all":
        return users
    recent = events.where(
        F.col("event_date").between(_days_before(day, cfg.active_window_days), _days_before(day, 1))
    ).select("user_id")
    return users.join(recent.distinct(), "user_id", "left_semi")


def popular_items(
    item_stats: DataFrame, day: dt.date, cfg: ScoreConfig, stats_cfg: ItemStatsConfig
) -> DataFrame:
    """(item_id, prior): the `popular_items` items as of `day` with the largest count."""
    w = cfg.popular_window_days
    count = f"exposures_{w}d" if cfg.popular_metric == "exposures" else f"{cfg.popular_metric}_{w}d"
    ranked = (
        item_stats.where((F.col("stats_date") == F.lit(day)) & (F.col(count) > 0))
        .select("item_id", F.col(count).cast("double").alias("prior"))
        .orderBy(F.col("prior").desc(), F.col("item_id"))
    )
    return ranked.limit(cfg.popular_items)


def recent_positive_events(
    events: DataFrame, day: dt.date, window_days: int, signals: list[str]
) -> DataFrame:
    """Events of the `window_days` days before `day` with any of `signals` equal to 1."""
    if not signals:
        raise ConfigError("sequences.positive_signals is empty: the cluster generator needs it")
    positive = reduce(lambda a, b: a | b, [F.coalesce(F.col(s), F.lit(0)) == 1 for s in signals])
    window = F.col("event_date").between(_days_before(day, window_days), _days_before(day, 1))
    return events.where(window & positive)


def cluster_items(
    recent_positives: DataFrame, user_clusters: DataFrame, cfg: ScoreConfig
) -> DataFrame:
    """(cluster, item_id, prior): per cluster the `cluster_items` items its members
    consumed positively most often in `recent_positives`."""
    counts = (
        recent_positives.join(user_clusters, "user_id")
        .groupBy("cluster", "item_id")
        .agg(F.count(F.lit(1)).cast("double").alias("prior"))
    )
    w = Window.partitionBy("cluster").orderBy(F.col("prior").desc(), F.col("item_id"))
    return (
        counts.withColumn("_rank", F.row_number().over(w))
        .where(F.col("_rank") <= cfg.cluster_items)
        .drop("_rank")
    )


def popular_candidates(users: DataFrame, items: DataFrame) -> DataFrame:
    """Every user × the popular pool (the pool is small: broadcast it)."""
    return users.crossJoin(F.broadcast(items)).select("user_id", "item_id", "prior")


def cluster_candidates(
    users: DataFrame, user_clusters: DataFrame, items_by_cluster: DataFrame
) -> DataFrame:
    """Every scored user × the items of its own cluster."""
    return (
        users.join(user_clusters, "user_id")
        .join(items_by_cluster, "cluster")
        .select("user_id", "item_id", "prior")
    )


def table_candidates(table: DataFrame, users: DataFrame, day: dt.date) -> DataFrame:
    """The supplied pairs of the scored users (of `day` when the table has score_date)."""
    missing = [c for c in ("user_id", "item_id") if c not in table.columns]
    if missing:
        raise ValueError(f"score.candidate_table is missing column(s): {', '.join(missing)}")
    if "score_date" in table.columns:
        table = table.where(F.col("score_date") == F.lit(day))
    pairs = table.select(
        F.col("user_id").cast("string"), F.col("item_id").cast("string")
    ).distinct()
    return pairs.join(users, "user_id", "left_semi").select(
        "user_id", "item_id", F.lit(0.0).alias("prior")
    )


def exclude_consumed(
    candidates: DataFrame, events: DataFrame, day: dt.date, cfg: ScoreConfig
) -> DataFrame:
    """Drop (user, item) pairs the user was exposed to before `day` (within
    `exclude_window_days`, or ever when it is 0)."""
    history = events.where(F.col("event_date") < F.lit(day))
    if cfg.exclude_window_days > 0:
        history = history.where(
            F.col("event_date") >= F.lit(_days_before(day, cfg.exclude_window_days))
        )
    seen = history.select("user_id", "item_id").distinct()
    return candidates.join(seen, ["user_id", "item_id"], "left_anti")


def cap_per_user(candidates: DataFrame, n: int) -> DataFrame:
    """At most `n` candidates per user, by the generator's prior (ties: item_id)."""
    w = Window.partitionBy("user_id").orderBy(F.col("prior").desc(), F.col("item_id"))
    return (
        candidates.dropDuplicates(["user_id", "item_id"])
        .withColumn("_rank", F.row_number().over(w))
        .where(F.col("_rank") <= n)
        .drop("_rank")
    )


def pseudo_exposures(pairs: DataFrame, day: dt.date) -> DataFrame:
    """(user_id, item_id) pairs as exposures at the start of `day` with unknown labels —
    the shape of bronze.events that `assemble_samples` reads."""
    start = dt.datetime.combine(day, dt.time())
    return pairs.select(
        "user_id",
        F.col("item_id").cast("string").alias("item_id"),
        F.lit(start).cast(T.TimestampType()).alias("event_ts"),
        *[F.lit(None).cast("int").alias(s) for s in SIGNALS],
        *[F.lit(None).cast("long").alias(d) for d in DURATIONS],
        F.lit(day).alias("event_date"),
    )


def candidate_features(
    pairs: DataFrame,
    day: dt.date,
    activity: DataFrame,
    sequences: DataFrame,
    item_stats: DataFrame,
    vocabulary: DataFrame,
    user_profiles: DataFrame | None,
    item_features: DataFrame | None,
    seq_cfg: SequenceConfig,
    stats_cfg: ItemStatsConfig,
    features: FeaturesConfig | None = None,
) -> DataFrame:
    """(user_id, item_id, model input columns) for `pairs`, with gold.samples' features
    as of the start of `day`. Ids the vocabulary lacks get index 0 (unknown); the
    vocabulary is read, never extended, by scoring."""
    day_features = DayFeatures(
        sample_date=day,
        events=pseudo_exposures(pairs, day),
        activity=activity,
        sequences=sequences,
        item_stats=item_stats,
        vocabulary=vocabulary,
        user_profiles=user_profiles,
        item_features=item_features,
        sequence_cfg=seq_cfg,
        stats_cfg=stats_cfg,
        features=features,
    )
    rows = assemble_samples(day_features)
    return rows.select("user_id", "item_id", *available_input_columns(rows.columns))
