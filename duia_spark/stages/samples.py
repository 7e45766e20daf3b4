"""`duia samples --date D`: gold.samples — one row per exposure on D, features as of D's start.

Writes gold.samples first, then the vocabulary's new ids: if the samples write fails,
neither table changes; if the vocabulary append fails after it, a re-run assigns the
same indices again (same new ids, same order) and completes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from pyspark import StorageLevel
from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.item_stats import item_stats_window
from duia_spark.data.samples import (
    DayFeatures,
    assemble_samples,
    item_dense_features,
    sample_vocabulary_candidates,
    samples_schema,
    side_categorical_features,
)
from duia_spark.data.vocabulary import VOCAB_KEYS, VOCABULARY_SCHEMA, assign_new_indices
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stages.day_inputs import (
    events_between,
    proceed_without_events,
    read_partition,
    require_rows,
    run_date,
)

NAME = "samples"
HELP = "one training row per exposure on --date, features as of its start → gold.samples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # only the common options


def _optional(lake: Lakehouse, table: str):
    if lake.exists(table):
        return lake.read(table)
    print(f"[samples] {table} not found at {lake.path(table)} — using defaults for its features")
    return None


def _feature_partitions(cfg: Config, lake: Lakehouse, day: dt.date) -> tuple:
    """(activity, sequences, item stats) as of D; an empty one is an error only when the
    events say it should have rows (a first day has no history yet)."""
    activity = read_partition(lake, "user_activity", "activity_date", day, NAME, "segment")
    require_rows(activity, "user_activity", day, NAME, "segment")
    sequences = read_partition(lake, "user_sequences", "as_of_date", day, NAME, "sequences")
    if (
        sequences.isEmpty()
        and not lake.read("events").where(F.col("event_date") < F.lit(day)).isEmpty()
    ):
        require_rows(sequences, "user_sequences", day, NAME, "sequences")
    item_stats = read_partition(lake, "item_stats", "stats_date", day, NAME, "item-stats")
    first, last = item_stats_window(day, cfg.item_stats)
    if item_stats.isEmpty() and not events_between(lake, first, last).isEmpty():
        require_rows(item_stats, "item_stats", day, NAME, "item-stats")
    return activity, sequences, item_stats


def for_day(cfg: Config, day: dt.date, full_rebuild: bool = False) -> int:
    """D's training rows (gold.samples), features as of the start of D; built from D's
    events alone, so `full_rebuild` (which the feature stages take) changes nothing."""
    del full_rebuild
    spark = build_spark_session(cfg, "duia-samples")
    lake = Lakehouse(spark, cfg)
    t0 = time.time()
    if not proceed_without_events(cfg, lake, NAME, day):
        return 0
    day_events = events_between(lake, day, day)
    if day_events.isEmpty():
        lake.replace_partitions(
            spark.createDataFrame([], samples_schema()), "samples", "sample_date", [day]
        )
        print(f"[samples] {day}: wrote an empty partition → {lake.path('samples')}")
        return 0

    activity, sequences, item_stats = _feature_partitions(cfg, lake, day)
    profiles = _optional(lake, "user_profiles")
    items = _optional(lake, "item_features")

    vocabulary = lake.read_or_empty("vocabulary", VOCABULARY_SCHEMA)
    candidates = sample_vocabulary_candidates(day_events, sequences, items)
    new_ids = assign_new_indices(candidates, vocabulary, day).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        new_by_kind = {r["kind"]: r["count"] for r in new_ids.groupBy("kind").count().collect()}
        day_features = DayFeatures(
            sample_date=day,
            events=day_events,
            activity=activity,
            sequences=sequences,
            item_stats=item_stats,
            vocabulary=vocabulary.unionByName(new_ids),
            user_profiles=profiles,
            item_features=items,
            sequence_cfg=cfg.sequences,
            stats_cfg=cfg.item_stats,
            features=cfg.features,
        )
        samples = assemble_samples(day_features)
        # The report is gathered while writing (no second read of the partition).
        s = lake.replace_partitions(
            samples,
            "samples",
            "sample_date",
            [day],
            summary=[
                F.count(F.lit(1)).alias("rows"),
                F.approx_count_distinct("user_id", 0.01).alias("users"),
                F.avg("hist_len").alias("hist"),
            ],
        )
        if new_by_kind:
            lake.append_new(new_ids, "vocabulary", VOCAB_KEYS)
    finally:
        new_ids.unpersist()

    new = ", ".join(
        f"{k} {new_by_kind.get(k, 0):,d}" for k in ("user", "item", "category", "author")
    )
    print(
        f"[samples] {day}: {s['rows']:,d} samples of about {s['users']:,d} users, mean hist_len "
        f"{s['hist'] or 0:.1f} → {lake.path('samples')}"
    )
    print(f"[samples]   new vocabulary ids: {new}")
    print(f"[samples]   item_dense = {item_dense_features(cfg.item_stats, cfg.features)}")
    side = side_categorical_features(cfg.features)
    if side:
        print(f"[samples]   side_cat = {[f'{kind}.{c}/{n}' for kind, c, n in side]}")
    print(f"[samples] done in {time.time() - t0:.1f}s")
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    return for_day(cfg, run_date(args, NAME))
