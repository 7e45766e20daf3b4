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

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.config import FeaturesConfig, ItemStatsConfig, SequenceConfig
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

# Sequence list → (samples column, its length's config field).
SEQUENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "exposures": ("hist_items", "exposures_len"),
    "positives": ("pos_items", "positives_len"),
    "negatives": ("neg_items", "negatives_len"),
}


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


def hash_bucket(value: Column, column: str, buckets: int) -> Column:
    """A categorical value's bucket in [1, buckets); 0 when the value is missing. Salted
    with the column's name, so equal codes of two columns land apart."""
    v = F.trim(value.cast("string"))
    h = F.pmod(F.xxhash64(F.lit(column), v), F.lit(buckets - 1)) + 1
    return F.when(v.isNull() | (v == ""), F.lit(0)).otherwise(h).cast("int")


def signed_log1p(c: Column) -> Column:
    """sign(x)·log1p(|x|) of a numeric string; 0 when missing or not a number."""
    x = F.when(F.trim(c).rlike(r"^-?[0-9]+(\.[0-9]*)?$"), F.trim(c).cast("double"))
    return F.coalesce(F.signum(x) * F.log1p(F.abs(x)), F.lit(0.0))


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
        ("hist_len", i),
        ("pos_len", i),
        ("neg_len", i),
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


def list_item_ids(sequences: DataFrame) -> DataFrame:
    """(user_id, <list>...) with each list of the snapshot as its item ids only. Select
    them before joining the snapshot: Spark does not prune nested fields through a join,
    and the Parquet read would decode every element's time and signals as well."""
    return sequences.select("user_id", *[F.col(f"{name}.item_id").alias(name) for name in LISTS])


def _pad(arr: Column, n: int) -> Column:
    """Exactly n ints: the first n of `arr`, then zeros."""
    padded = F.concat(arr, F.array_repeat(F.lit(0), F.greatest(F.lit(0), F.lit(n) - F.size(arr))))
    return F.slice(padded, 1, n)


def _tagged_ids(list_code: int, name: str) -> Column:
    """A list's item ids (column `name`, an array of ids) as (list, pos, item_id) structs,
    pos counting from 0."""
    return F.transform(
        F.col(name),
        lambda item_id, pos: F.struct(
            F.lit(list_code).alias("list"), pos.alias("pos"), item_id.alias("item_id")
        ),
    )


def sequence_indices(
    sequences: DataFrame, users: DataFrame, vocabulary: DataFrame, cfg: SequenceConfig
) -> DataFrame:
    """Per user of the day: hist/pos/neg item indices (most recent first, padded) and lengths.

    The day's snapshot rows are read once and partitioned by user while still compact
    (one row per user); their ids are then exploded, looked up in the item vocabulary
    (Spark broadcasts it when it is small) and folded back per user without another
    shuffle: the exploded ids, many per user, never cross the network.
    """
    seq = list_item_ids(sequences).join(users, "user_id", "left_semi").repartition("user_id")
    every_list = F.concat(*[_tagged_ids(code, name) for code, name in enumerate(LISTS)])
    rows = seq.select("user_id", F.explode(every_list).alias("e")).select("user_id", "e.*")
    rows = rows.join(index_lookup(vocabulary, "item", "item_id", "idx"), "item_id", "left")
    aggs = [
        F.transform(
            F.array_sort(
                F.collect_list(
                    F.when(
                        F.col("list") == code,
                        F.struct("pos", F.coalesce("idx", F.lit(0)).alias("idx")),
                    )
                )
            ),
            lambda x: x["idx"],
        ).alias(SEQUENCE_COLUMNS[name][0])
        for code, name in enumerate(LISTS)
    ]
    return rows.groupBy("user_id").agg(*aggs)


def _float_array(parts: list[Column]) -> Column:
    return F.array(*[p.cast("float") for p in parts])


def _int_array(parts: list[Column]) -> Column:
    return F.array(*parts) if parts else F.array().cast("array<int>")


def _zeros(n: int, tp: str) -> Column:
    """An array of n zeros of type `tp`."""
    return F.array_repeat(F.lit(0).cast(tp), n)


def _log1p(c: Column) -> Column:
    return F.log1p(F.greatest(F.coalesce(c.cast("double"), F.lit(0.0)), F.lit(0.0)))


def age_years(age_range: Column) -> Column:
    """A profile's age in years: a number ("49"), the middle of a range ("24-30" -> 27)
    or the bound of an open one ("50+" -> 50); null for anything else."""
    s = F.trim(age_range)
    low = F.regexp_extract(s, r"^([0-9]+(?:\.[0-9]*)?)\s*(?:-\s*[0-9]+|\+)?$", 1)
    high = F.regexp_extract(s, r"^[0-9]+\s*-\s*([0-9]+)$", 1)
    return (
        F.when(low == "", F.lit(None).cast("double"))
        .when(high != "", (low.cast("double") + high.cast("double")) / 2)
        .otherwise(low.cast("double"))
    )


def gender_is(gender: Column, code: str) -> Column:
    """1.0 when the profile's gender starts with `code` ("F", "female", ...), else 0."""
    return F.when(F.upper(F.trim(gender)).startswith(code), 1.0).otherwise(0.0)


def assemble_samples(
    day_events: DataFrame,
    sample_date: dt.date,
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
    """gold.samples rows for the exposures of `sample_date`.

    `activity`, `sequences` and `item_stats` must be the partitions *as of* `sample_date`;
    `vocabulary` must already hold every id of `sample_vocabulary_candidates`.
    """
    ev = day_events.where(F.col("event_date") == F.lit(sample_date))
    users = ev.select("user_id").distinct()
    no_attrs = F.lit(None).cast("map<string,string>")

    if user_profiles is None:
        profiles = users.select(
            "user_id", *[F.lit(None).cast("string").alias(c) for c in PROFILE_COLUMNS]
        )
        profiles = profiles.withColumns({"_profile": F.lit(0), "_user_attrs": no_attrs})
    else:
        profiles = user_profiles.select(
            "user_id",
            *PROFILE_COLUMNS,
            F.lit(1).alias("_profile"),
            (F.col("attributes") if "attributes" in user_profiles.columns else no_attrs).alias(
                "_user_attrs"
            ),
        )
    if item_features is None:
        items = (
            ev.select("item_id")
            .distinct()
            .select(
                "item_id",
                F.lit(None).cast("string").alias("category"),
                F.lit(None).cast("string").alias("author_id"),
                F.lit(None).cast("long").alias("_item_duration"),
                no_attrs.alias("_item_attrs"),
            )
        )
    else:
        items = item_features.select(
            "item_id",
            "category",
            "author_id",
            F.col("duration_ms").alias("_item_duration"),
            (F.col("attributes") if "attributes" in item_features.columns else no_attrs).alias(
                "_item_attrs"
            ),
        )
    act = activity.where(F.col("activity_date") == F.lit(sample_date)).select(
        "user_id", "active_days", "valid_interactions", "exposures", "window_days", "segment"
    )
    stats_cols = [f"exposures_{w}d" for w in stats_cfg.windows_days] + [
        f"{s}_rate_{w}d" for w in stats_cfg.windows_days for s in stats_cfg.rate_signals
    ]
    stats = item_stats.where(F.col("stats_date") == F.lit(sample_date)).select(
        "item_id", *stats_cols
    )
    seqs = sequence_indices(
        sequences.where(F.col("as_of_date") == F.lit(sample_date)), users, vocabulary, seq_cfg
    )

    # Everything about an item is gathered per item of the day, everything about a user
    # per user of the day, and each side meets the exposures in one join: the exposure
    # rows are shuffled twice (by item, then by user), and the sequence arrays travel
    # once per user, not once per exposure through every join. What a side's features
    # are made of (profile and attribute maps, item statistics) is folded into its
    # feature arrays on that side, once per user or item: the maps never travel with the
    # exposures, and a user's features are not recomputed for each of their exposures.
    exposures = F.coalesce(F.col("exposures"), F.lit(0))
    user_dense_parts = [
        _log1p(F.col("register_days")),
        _log1p(F.col("follow_user_num")),
        _log1p(F.col("active_days")),
        _log1p(F.col("valid_interactions")),
        _log1p(F.col("exposures")),
        F.coalesce(F.col("active_days") / F.col("window_days"), F.lit(0.0)),
        F.when(exposures > 0, F.col("valid_interactions") / exposures).otherwise(0.0),
        F.coalesce(F.col("_profile"), F.lit(0)).cast("double"),
        gender_is(F.col("gender"), "F"),
        gender_is(F.col("gender"), "M"),
        F.coalesce(age_years(F.col("age_range")) / 10, F.lit(0.0)),
    ]
    # item_dense: log1p of the duration (the item table's, else the exposure's: joined
    # per exposure below), then these, per item.
    item_parts: list[Column] = []
    for w in stats_cfg.windows_days:
        item_parts.append(_log1p(F.col(f"exposures_{w}d")))
        item_parts += [
            F.coalesce(F.col(f"{s}_rate_{w}d"), F.lit(0.0)) for s in stats_cfg.rate_signals
        ]
    side_cat: dict[str, list[Column]] = {"user": [], "item": [], "context": []}
    if features is not None:
        user_dense_parts += [signed_log1p(F.col("_user_attrs")[c]) for c in features.user_numeric]
        item_parts += [signed_log1p(F.col("_item_attrs")[c]) for c in features.item_numeric]
        if features.item_upload_date:
            uploaded = F.to_date(
                F.substring(F.col("_item_attrs")[features.item_upload_date], 1, 10)
            )
            item_parts.append(
                _log1p(F.datediff(F.lit(sample_date), uploaded))  # unknown or future: 0
            )
        source = {
            "user": lambda c: F.col("_user_attrs")[c],
            "item": lambda c: F.col("_item_attrs")[c],
            "context": lambda c: F.col(c) if c in ev.columns else F.lit(None),
        }
        for kind, c, n in side_categorical_features(features):
            side_cat[kind].append(hash_bucket(source[kind](c), f"{kind}.{c}", n))
    segment = F.coalesce(F.col("segment"), F.lit("low"))
    segment_idx = F.create_map(*[F.lit(x) for kv in SEGMENT_INDEX.items() for x in kv])[segment]
    seq_cols = []
    for col, key in SEQUENCE_COLUMNS.values():
        seq_cols.append(
            _pad(F.coalesce(F.col(col), F.array().cast("array<int>")), getattr(seq_cfg, key)).alias(
                col
            )
        )
    n_len = {
        col: F.least(
            F.size(F.coalesce(F.col(col), F.array().cast("array<int>"))),
            F.lit(getattr(seq_cfg, key)),
        )
        for col, key in SEQUENCE_COLUMNS.values()
    }

    item_side = (
        ev.select("item_id")
        .distinct()
        .join(items, "item_id", "left")
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
            _float_array(item_parts).alias("_item_dense"),
            _int_array(side_cat["item"]).alias("_item_cat"),
        )
    )
    user_side = (
        users.join(profiles, "user_id", "left")
        .join(act, "user_id", "left")
        .join(seqs, "user_id", "left")
        .join(index_lookup(vocabulary, "user", "user_id", "user_idx"), "user_id", "left")
        .select(
            "user_id",
            "user_idx",
            _float_array(user_dense_parts).alias("user_dense"),
            _int_array(side_cat["user"]).alias("_user_cat"),
            "segment",
            *seq_cols,
            n_len["hist_items"].alias("hist_len"),
            n_len["pos_items"].alias("pos_len"),
            n_len["neg_items"].alias("neg_len"),
        )
    )
    df = ev.join(item_side, "item_id", "left").join(user_side, "user_id", "left")

    def joined(col: str, missing: Column) -> Column:
        """A side's column after the outer join, or `missing`: for ids the vocabulary
        lacks (index 0) and rows a side has no match for (an exposure without an item
        id, as scoring's per-user queries are: zeros of the array's width)."""
        return F.coalesce(F.col(col), missing).alias(col)

    duration = F.coalesce(F.col("_item_duration"), F.col("duration_ms"))
    item_dense = F.concat(
        _float_array([_log1p(duration)]), joined("_item_dense", _zeros(len(item_parts), "float"))
    )
    side = [
        joined("_user_cat", _zeros(len(side_cat["user"]), "int")),
        joined("_item_cat", _zeros(len(side_cat["item"]), "int")),
        _int_array(side_cat["context"]),
    ]
    out = df.select(
        "user_id",
        "item_id",
        "event_ts",
        *[joined(c, F.lit(0)) for c in ("user_idx", "item_idx", "category_idx", "author_idx")],
        joined("user_dense", _zeros(len(user_dense_parts), "float")),
        item_dense.alias("item_dense"),
        F.concat(*side).alias("side_cat"),
        segment.alias("segment"),  # users without activity are low-active
        segment_idx.alias("segment_idx"),
        *[
            joined(col, _zeros(getattr(seq_cfg, key), "int"))
            for col, key in SEQUENCE_COLUMNS.values()
        ],
        *[joined(c, F.lit(0)) for c in ("hist_len", "pos_len", "neg_len")],
        *[F.coalesce(F.col(s), F.lit(0)).alias(s) for s in SIGNALS],
        *[F.col(s).isNotNull().cast("int").alias(f"{s}_known") for s in SIGNALS],
        F.coalesce(F.col("play_time_ms"), F.lit(0)).alias("play_time_ms"),
        F.col("play_time_ms").isNotNull().cast("int").alias("play_time_known"),
        F.coalesce(F.col("duration_ms"), F.col("_item_duration"), F.lit(0)).alias("duration_ms"),
        F.lit(sample_date).alias("sample_date"),
    )
    return out.select(*[F.col(f.name).cast(f.dataType) for f in samples_schema().fields])
