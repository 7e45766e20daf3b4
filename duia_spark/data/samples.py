"""Training samples: one row per exposure on day D, with features as of the start of D.

Every feature comes from a table stamped "as of D" (user activity, behaviour sequences,
item stats — all built from events with event_date < D) or from the user / item
dimension tables; the exposure's own signals and play time are only ever labels.
Ids become indices through silver.vocabulary (0 = padding / unknown).

Labels: a null signal is filled with 0 and its `<signal>_known` column is 0, so the
trainer can mask the task's loss for rows whose source lacks that signal
(`<signal>_known` = 1 when the log had a value). Same for `play_time_ms` /
`play_time_known`. Pure DataFrame → DataFrame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import FeaturesConfig, ItemStatsConfig, SequenceConfig
from duia_spark.data.feature_encoding import (
    age_years,
    float_array,
    gender_is,
    hash_bucket,
    int_array,
    nonneg_log1p,
    signed_log1p,
    zeros,
)
from duia_spark.data.sample_sequences import (
    LENGTH_COLUMNS,
    SEQUENCE_COLUMNS,
    list_item_ids,
    padded_sequences,
    sequence_indices,
)
from duia_spark.data.schema import SEGMENT_INDEX, SIGNALS
from duia_spark.data.sequences import LISTS
from duia_spark.data.vocabulary import (
    index_lookup,
    vocabulary_candidates,
    vocabulary_candidates_by_column,
)

# user_dense, in this order (all float32):
USER_DENSE_FEATURES: tuple[str, ...] = (
    "log1p_register_days",
    "log1p_follow_user_num",
    "log1p_active_days",
    "log1p_valid_interactions",
    "log1p_exposures",
    "active_day_share",  # active_days / window_days
    "valid_share",  # valid_interactions / exposures (0 without exposures)
    "profile_known",  # 1 when bronze.user_profiles has the user
    # Demographics from the profile (0 when unknown): for a user seen for the first
    # time they are the only user-side signal under the nightly contract.
    "gender_female",
    "gender_male",
    "age_decades",  # years / 10: an age ("49") or the middle of a range ("24-30" -> 2.7)
)
PROFILE_COLUMNS = ("register_days", "follow_user_num", "gender", "age_range")


@dataclass(frozen=True)
class DayFeatures:
    """What the samples of one day are built from: its exposures, the feature tables as of
    the start of the day, the vocabulary, and the settings that shape the arrays.

    `events`, `activity`, `sequences` and `item_stats` are read at `sample_date`'s
    partition only. `vocabulary` must already hold every id of
    `sample_vocabulary_candidates`. Without `user_profiles` or `item_features` their
    features keep their defaults.
    """

    sample_date: dt.date
    events: DataFrame  # bronze.events
    activity: DataFrame  # silver.user_activity
    sequences: DataFrame  # silver.user_sequences
    item_stats: DataFrame  # silver.item_stats
    vocabulary: DataFrame
    user_profiles: DataFrame | None
    item_features: DataFrame | None
    sequence_cfg: SequenceConfig
    stats_cfg: ItemStatsConfig
    features: FeaturesConfig | None = None


def user_dense_features(features: FeaturesConfig | None = None) -> list[str]:
    """Names of user_dense's entries: the fixed ones, then the source's numeric profile
    columns (`features.user_numeric`)."""
    extra = [f"slog1p_{c}" for c in features.user_numeric] if features else []
    return [*USER_DENSE_FEATURES, *extra]


def item_dense_features(cfg: ItemStatsConfig, features: FeaturesConfig | None = None) -> list[str]:
    """Names of item_dense's entries, in order: duration, per window exposures and rates,
    then the source's numeric item columns and the item's age (`features.*`)."""
    names = ["log1p_duration_ms"]
    for w in cfg.windows_days:
        names.append(f"log1p_exposures_{w}d")
        names += [f"{s}_rate_{w}d" for s in cfg.rate_signals]
    if features:
        names += [f"slog1p_{c}" for c in features.item_numeric]
        if features.item_upload_date:
            names.append("log1p_days_since_upload")
    return names


def side_categorical_features(features: FeaturesConfig | None) -> list[tuple[str, str, int]]:
    """(kind, column, buckets) of side_cat's entries, in order: user, item, context."""
    if features is None:
        return []
    return [
        *[("user", c, n) for c, n in features.user_categorical.items()],
        *[("item", c, n) for c, n in features.item_categorical.items()],
        *[("context", c, n) for c, n in features.context_categorical.items()],
    ]


def samples_schema() -> T.StructType:
    i, f, s = T.IntegerType(), T.FloatType(), T.StringType()
    fields = [
        ("user_id", s),
        ("item_id", s),
        ("event_ts", T.TimestampType()),
        ("user_idx", i),
        ("item_idx", i),
        ("category_idx", i),
        ("author_idx", i),
        ("user_dense", T.ArrayType(f)),
        ("item_dense", T.ArrayType(f)),
        ("side_cat", T.ArrayType(i)),
        ("segment", s),
        ("segment_idx", i),
        *[(col, T.ArrayType(i)) for col, _ in SEQUENCE_COLUMNS.values()],
        *[(c, i) for c in LENGTH_COLUMNS.values()],
        *[(sig, i) for sig in SIGNALS],
        *[(f"{sig}_known", i) for sig in SIGNALS],
        ("play_time_ms", T.LongType()),
        ("play_time_known", i),
        ("duration_ms", T.LongType()),
        ("sample_date", T.DateType()),
    ]
    return T.StructType([T.StructField(n, tp, True) for n, tp in fields])


def sample_vocabulary_candidates(
    day_events: DataFrame, sequences: DataFrame, item_features: DataFrame | None
) -> DataFrame:
    """Every (kind, id) a day's samples refer to: users, items (exposed or in a
    sequence of an exposed user), and those items' categories and authors."""
    users = day_events.select("user_id").distinct()
    # One scan of the snapshot, one explode of its three lists' ids together.
    seq_items = (
        list_item_ids(sequences)
        .join(users, "user_id", "left_semi")
        .select(F.explode(F.concat(*[F.col(name) for name in LISTS])).alias("item_id"))
    )
    items = seq_items.unionByName(day_events.select("item_id")).distinct()
    if item_features is None:
        item_side = vocabulary_candidates("item", items)
    else:
        # Each item's id, category and author in one pass: one scan of the snapshot, not
        # one per kind.
        feats = items.join(
            item_features.select("item_id", "category", "author_id"), "item_id", "left"
        )
        item_side = vocabulary_candidates_by_column(
            feats, {"item": "item_id", "category": "category", "author": "author_id"}
        )
    return vocabulary_candidates("user", users).unionByName(item_side).distinct()


def assemble_samples(day_features: DayFeatures) -> DataFrame:
    """gold.samples rows for the exposures of `day_features.sample_date`."""
    exposures = day_features.events.where(F.col("event_date") == F.lit(day_features.sample_date))
    # Everything about an item is gathered per item of the day, everything about a user
    # per user of the day, and each side meets the exposures in one join: the exposure
    # rows are shuffled twice (by item, then by user), and the sequence arrays travel
    # once per user, not once per exposure through every join. What a side's features
    # are made of (profile and attribute maps, item statistics) is folded into its
    # feature arrays on that side, once per user or item: the maps never travel with the
    # exposures, and a user's features are not recomputed for each of their exposures.
    item_side = build_item_side(day_features, exposures.select("item_id").distinct())
    user_side = build_user_side(day_features, exposures.select("user_id").distinct())
    rows = exposures.join(item_side, "item_id", "left").join(user_side, "user_id", "left")
    context = _side_categorical(
        day_features.features,
        "context",
        lambda c: F.col(c) if c in exposures.columns else F.lit(None),
    )
    return select_sample_columns(rows, day_features, context)


def build_user_side(day_features: DayFeatures, users: DataFrame) -> DataFrame:
    """Per user of the day: user_idx, user_dense, its side categories (`_user_cat`), the
    activity segment (null without activity) and the padded sequences with their lengths."""
    f = day_features
    as_of = F.lit(f.sample_date)
    activity = f.activity.where(F.col("activity_date") == as_of).select(
        "user_id", "active_days", "valid_interactions", "exposures", "window_days", "segment"
    )
    sequences = sequence_indices(
        f.sequences.where(F.col("as_of_date") == as_of), users, f.vocabulary, f.sequence_cfg
    )
    user_cat = _side_categorical(f.features, "user", lambda c: F.col("_user_attrs")[c])
    return (
        users.join(_user_profiles(users, f.user_profiles), "user_id", "left")
        .join(activity, "user_id", "left")
        .join(sequences, "user_id", "left")
        .join(index_lookup(f.vocabulary, "user", "user_id", "user_idx"), "user_id", "left")
        .select(
            "user_id",
            "user_idx",
            float_array(_user_dense_parts(f.features)).alias("user_dense"),
            int_array(user_cat).alias("_user_cat"),
            "segment",
            *padded_sequences(f.sequence_cfg),
        )
    )


def _user_profiles(users: DataFrame, user_profiles: DataFrame | None) -> DataFrame:
    """Per user: the profile's columns, `_profile` (1 when the table has the user) and
    the attribute map `_user_attrs`; all unknown without a profile table."""
    if user_profiles is None:
        profiles = users.select(
            "user_id", *[F.lit(None).cast("string").alias(c) for c in PROFILE_COLUMNS]
        )
        return profiles.withColumns({"_profile": F.lit(0), "_user_attrs": _no_attributes()})
    return user_profiles.select(
        "user_id",
        *PROFILE_COLUMNS,
        F.lit(1).alias("_profile"),
        _attributes(user_profiles).alias("_user_attrs"),
    )


def _user_dense_parts(features: FeaturesConfig | None) -> list[Column]:
    """user_dense's entries (`user_dense_features`) from a user's profile and activity."""
    exposures = F.coalesce(F.col("exposures"), F.lit(0))
    parts = [
        nonneg_log1p(F.col("register_days")),
        nonneg_log1p(F.col("follow_user_num")),
        nonneg_log1p(F.col("active_days")),
        nonneg_log1p(F.col("valid_interactions")),
        nonneg_log1p(F.col("exposures")),
        F.coalesce(F.col("active_days") / F.col("window_days"), F.lit(0.0)),
        F.when(exposures > 0, F.col("valid_interactions") / exposures).otherwise(0.0),
        F.coalesce(F.col("_profile"), F.lit(0)).cast("double"),
        gender_is(F.col("gender"), "F"),
        gender_is(F.col("gender"), "M"),
        F.coalesce(age_years(F.col("age_range")) / 10, F.lit(0.0)),
    ]
    if features is not None:
        parts += [signed_log1p(F.col("_user_attrs")[c]) for c in features.user_numeric]
    return parts


def build_item_side(day_features: DayFeatures, items: DataFrame) -> DataFrame:
    """Per item of the day: its item, category and author indices, the item table's
    duration (`_item_duration`), item_dense after its first entry (`_item_dense`: the
    duration may come from the exposure) and its side categories (`_item_cat`)."""
    f = day_features
    windows, signals = f.stats_cfg.windows_days, f.stats_cfg.rate_signals
    stats_cols = [f"exposures_{w}d" for w in windows] + [
        f"{s}_rate_{w}d" for w in windows for s in signals
    ]
    stats = f.item_stats.where(F.col("stats_date") == F.lit(f.sample_date)).select(
        "item_id", *stats_cols
    )
    item_cat = _side_categorical(f.features, "item", lambda c: F.col("_item_attrs")[c])
    vocabulary = f.vocabulary
    return (
        items.join(_item_attributes(items, f.item_features), "item_id", "left")
        .join(stats, "item_id", "left")
        .join(index_lookup(vocabulary, "item", "item_id", "item_idx"), "item_id", "left")
        .join(index_lookup(vocabulary, "category", "category", "category_idx"), "category", "left")
        .join(index_lookup(vocabulary, "author", "author_id", "author_idx"), "author_id", "left")
        .select(
            "item_id",
            "item_idx",
            "category_idx",
            "author_idx",
            "_item_duration",
            float_array(_item_dense_parts(f)).alias("_item_dense"),
            int_array(item_cat).alias("_item_cat"),
        )
    )


def _item_attributes(items: DataFrame, item_features: DataFrame | None) -> DataFrame:
    """Per item: category, author_id, `_item_duration` and the attribute map
    `_item_attrs`; all unknown without an item table."""
    if item_features is None:
        return items.select(
            "item_id",
            F.lit(None).cast("string").alias("category"),
            F.lit(None).cast("string").alias("author_id"),
            F.lit(None).cast("long").alias("_item_duration"),
            _no_attributes().alias("_item_attrs"),
        )
    return item_features.select(
        "item_id",
        "category",
        "author_id",
        F.col("duration_ms").alias("_item_duration"),
        _attributes(item_features).alias("_item_attrs"),
    )


def _item_dense_parts(day_features: DayFeatures) -> list[Column]:
    """item_dense's entries after log1p of the duration (the item table's, else the
    exposure's: joined per exposure), from the item's statistics and attributes."""
    cfg, features = day_features.stats_cfg, day_features.features
    parts: list[Column] = []
    for w in cfg.windows_days:
        parts.append(nonneg_log1p(F.col(f"exposures_{w}d")))
        parts += [F.coalesce(F.col(f"{s}_rate_{w}d"), F.lit(0.0)) for s in cfg.rate_signals]
    if features is not None:
        parts += [signed_log1p(F.col("_item_attrs")[c]) for c in features.item_numeric]
        if features.item_upload_date:
            uploaded = F.substring(F.col("_item_attrs")[features.item_upload_date], 1, 10)
            age_days = F.datediff(F.lit(day_features.sample_date), F.to_date(uploaded))
            parts.append(nonneg_log1p(age_days))  # unknown or future: 0
    return parts


def _side_categorical(
    features: FeaturesConfig | None, kind: str, value: Callable[[str], Column]
) -> list[Column]:
    """The buckets of side_cat's `kind` entries, each column's value read by `value`."""
    return [
        hash_bucket(value(c), f"{k}.{c}", n)
        for k, c, n in side_categorical_features(features)
        if k == kind
    ]


def _no_attributes() -> Column:
    return F.lit(None).cast("map<string,string>")


def _attributes(table: DataFrame) -> Column:
    """The table's `attributes` map; null where the table has none."""
    return F.col("attributes") if "attributes" in table.columns else _no_attributes()


def _after_join(col: str, missing: Column) -> Column:
    """A side's column after the outer join, or `missing`: for ids the vocabulary lacks
    (index 0) and rows a side has no match for (an exposure without an item id, as
    scoring's per-user queries are: zeros of the array's width)."""
    return F.coalesce(F.col(col), missing).alias(col)


def _label_columns() -> list[Column]:
    """The exposure's signals and play time, 0 when null, each with its `_known` flag."""
    return [
        *[F.coalesce(F.col(s), F.lit(0)).alias(s) for s in SIGNALS],
        *[F.col(s).isNotNull().cast("int").alias(f"{s}_known") for s in SIGNALS],
        F.coalesce(F.col("play_time_ms"), F.lit(0)).alias("play_time_ms"),
        F.col("play_time_ms").isNotNull().cast("int").alias("play_time_known"),
    ]


def select_sample_columns(
    rows: DataFrame, day_features: DayFeatures, context_cat: list[Column]
) -> DataFrame:
    """gold.samples' columns from the exposures joined with both sides: features of
    unmatched rows at their defaults, labels with their `_known` flags, cast to
    `samples_schema`."""
    f = day_features
    widths = {
        kind: sum(k == kind for k, _, _ in side_categorical_features(f.features))
        for kind in ("user", "item")
    }
    n_item_dense = len(item_dense_features(f.stats_cfg, f.features))
    duration = F.coalesce(F.col("_item_duration"), F.col("duration_ms"))
    item_dense = F.concat(
        float_array([nonneg_log1p(duration)]),
        _after_join("_item_dense", zeros(n_item_dense - 1, "float")),
    )
    side = [
        _after_join("_user_cat", zeros(widths["user"], "int")),
        _after_join("_item_cat", zeros(widths["item"], "int")),
        int_array(context_cat),
    ]
    segment = F.coalesce(F.col("segment"), F.lit("low"))
    segment_idx = F.create_map(*[F.lit(x) for kv in SEGMENT_INDEX.items() for x in kv])[segment]
    out = rows.select(
        "user_id",
        "item_id",
        "event_ts",
        *[_after_join(c, F.lit(0)) for c in ("user_idx", "item_idx", "category_idx", "author_idx")],
        _after_join("user_dense", zeros(len(user_dense_features(f.features)), "float")),
        item_dense.alias("item_dense"),
        F.concat(*side).alias("side_cat"),
        segment.alias("segment"),  # users without activity are low-active
        segment_idx.alias("segment_idx"),
        *[
            _after_join(col, zeros(getattr(f.sequence_cfg, key), "int"))
            for col, key in SEQUENCE_COLUMNS.values()
        ],
        *[_after_join(c, F.lit(0)) for c in LENGTH_COLUMNS.values()],
        *_label_columns(),
        F.coalesce(F.col("duration_ms"), F.col("_item_duration"), F.lit(0)).alias("duration_ms"),
        F.lit(f.sample_date).alias("sample_date"),
    )
    return out.select(*[F.col(c.name).cast(c.dataType) for c in samples_schema().fields])
