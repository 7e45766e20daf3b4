"""Synthetic interaction logs with planted ground truth — the embedded default data.

Users belong to planted interest groups, items to latent topics; the probability of
every signal follows the true user-item affinity; activity is heavy-tailed so that
many users are low-active. The logs are shaped like a KuaiRand export (one folder per
day); the truth is written beside them for simulation-based evaluation and is never
read by the training stages.

Users and items (small) are drawn with numpy; events (large) are drawn by Spark with
counter-based hashing, so the output depends only on the seed, not on partitioning.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from duia_spark.config import GeneratorConfig

LOG_DIR = "log"
USERS_FILE = "users/users.csv"
ITEMS_FILE = "items/items.csv"
TRUTH_DIR = "truth"
MANIFEST = "_manifest.json"

# Columns of a daily drop, in KuaiRand's order and naming.
LOG_COLUMNS = [
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "tab",
]  # fmt: skip

_MASK52 = (1 << 52) - 1


@dataclass(frozen=True)
class Population:
    """The planted truth: who likes what, and how active everyone is."""

    # user_id, group, p_active, events_per_day, latent, profile columns, premise columns
    users: pd.DataFrame
    items: pd.DataFrame  # video_id, topic, latent, category, author_id, duration_ms
    group_topic: np.ndarray  # [groups] favourite topic of each group


SPREAD_AT_8 = 0.35


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def draw_population(cfg: GeneratorConfig) -> Population:
    rng = np.random.default_rng(cfg.seed)
    d = cfg.latent_dim
    group_centres = _unit_rows(rng.normal(size=(cfg.groups, d)))
    topic_centres = _unit_rows(rng.normal(size=(cfg.topics, d)))
    group_topic = np.argmax(group_centres @ topic_centres.T, axis=1)

    # Individual spread around the group's (the topic's) centre: its expected norm is
    # the same in any latent dimension (0.35 per coordinate at 8 dimensions).
    spread = SPREAD_AT_8 * np.sqrt(8 / d)
    group = rng.integers(0, cfg.groups, cfg.users)
    user_latent = _unit_rows(group_centres[group] + spread * rng.normal(size=(cfg.users, d)))
    # Heavy-tailed activity: most users show up on a few days with a few exposures.
    p_active = np.clip(rng.beta(0.45, 1.3, cfg.users), 0.02, 0.97)
    events_per_day = 1 + np.floor(cfg.max_events_per_active_day * rng.beta(0.6, 3.0, cfg.users))
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(cfg.users)],
            "group": group.astype("int32"),
            "p_active": p_active,
            "events_per_day": events_per_day.astype("int32"),
            "latent": list(user_latent),
            "gender": rng.choice(["F", "M", "U"], cfg.users, p=[0.45, 0.45, 0.10]),
            "age_range": rng.choice(["18-23", "24-30", "31-40", "41-50", "50+"], cfg.users),
            "register_days": rng.integers(1, 2000, cfg.users).astype("int32"),
            "follow_user_num": rng.geometric(0.05, cfg.users).astype("int32"),
        }
    )

    # Items of topic t are t, t+T, t+2T, ...: an item of a given topic is cheap to draw.
    topic = np.arange(cfg.items) % cfg.topics
    item_latent = _unit_rows(topic_centres[topic] + spread * rng.normal(size=(cfg.items, d)))
    categories_per_topic = max(1, cfg.categories // cfg.topics)
    category = topic * categories_per_topic + rng.integers(0, categories_per_topic, cfg.items)
    items = pd.DataFrame(
        {
            "video_id": [f"v{i:07d}" for i in range(cfg.items)],
            "topic": topic.astype("int32"),
            "latent": list(item_latent),
            "category": [f"c{c:03d}" for c in category],
            "author_id": [f"a{a:05d}" for a in rng.integers(0, cfg.authors, cfg.items)],
            "duration_ms": (rng.lognormal(10.3, 0.6, cfg.items)).astype("int64") + 3000,
        }
    )
    users = users.assign(**premise_columns(cfg, group))
    return Population(users=users, items=items, group_topic=group_topic)


# Cohorts of users (column `cohort` of the population and the truth).
REGULAR, SPARSE, NEW = 0, 1, 2
COHORT_NAMES = ("regular", "sparse", "new")


def premise_columns(cfg: GeneratorConfig, group: np.ndarray) -> dict[str, np.ndarray]:
    """The columns DUIA's premise adds (`community`, `cohort`, `debut_day`,
    `debut_events`), from their own random stream: the rest of the world does not move
    when these knobs do."""
    rng = np.random.default_rng([cfg.seed, 2])
    n = len(group)
    told = rng.random(n) < cfg.profile_informativeness
    community = np.where(told, group, rng.integers(0, cfg.groups, n))
    u = rng.random(n)
    cohort = np.where(
        u < cfg.sparse_user_share,
        SPARSE,
        np.where(u < cfg.sparse_user_share + cfg.new_user_share, NEW, REGULAR),
    )
    lo, hi = cfg.sparse_user_events
    late_start = cfg.days - cfg.late_days
    debut_day = late_start - rng.integers(1, max(1, cfg.debut_days) + 1, n)
    return {
        "community": np.array([f"k{c:04d}" for c in community]),
        "cohort": cohort.astype("int32"),
        "debut_day": np.where(cohort == SPARSE, debut_day, -1).astype("int32"),
        "debut_events": rng.integers(lo, hi + 1, n).astype("int32"),
    }


def _uniform(seed: int, salt: str, *cols: Column) -> Column:
    """A deterministic U[0,1) per row from a counter-based hash of (seed, salt, cols)."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return h.bitwiseAND(F.lit(_MASK52)).cast("double") / float(1 << 52)


# The true response model. Given affinity a (cosine of latent vectors, in [-1, 1]):
# click ~ Bernoulli(sigmoid(4a - 0.5)); a click watches WATCH_SCALE * sigmoid(3a + 4(u - 0.5))
# of the video (u ~ U[0, 1)), a skip SKIP_WATCH * u; a long view is a watch above 0.6.
CLICK_SLOPE, CLICK_BIAS = 4.0, -0.5
WATCH_SCALE, WATCH_SLOPE, WATCH_SPREAD = 1.3, 3.0, 4.0
SKIP_WATCH = 0.08
LONG_VIEW_WATCH = 0.6


def _sigmoid(x: Column) -> Column:
    return 1.0 / (1.0 + F.exp(-x))


def _softplus(x: Column) -> Column:
    return F.log1p(F.exp(x))


def click_probability(aff: Column) -> Column:
    return _sigmoid(CLICK_SLOPE * aff + CLICK_BIAS)


def expected_outcomes(aff: Column, duration_ms: Column) -> dict[str, Column]:
    """Ground-truth expectations of one exposure, in closed form from the response model:
    `p_long_view` (a valid view) and `expected_play_ms` (dwell). Used by the simulation."""
    p_click = click_probability(aff)
    # P(WATCH_SCALE * sigmoid(z) > LONG_VIEW_WATCH), z = 3a + 4(u - 0.5), u uniform.
    threshold = float(np.log((LONG_VIEW_WATCH / WATCH_SCALE) / (1 - LONG_VIEW_WATCH / WATCH_SCALE)))
    p_long_given_click = F.least(
        F.greatest(0.5 - (F.lit(threshold) - WATCH_SLOPE * aff) / WATCH_SPREAD, F.lit(0.0)),
        F.lit(1.0),
    )
    # E[sigmoid(c + s(u - 0.5))] over u = (softplus(c + s/2) - softplus(c - s/2)) / s.
    c, half = WATCH_SLOPE * aff, WATCH_SPREAD / 2
    mean_watch_click = WATCH_SCALE * (_softplus(c + half) - _softplus(c - half)) / WATCH_SPREAD
    mean_watch = p_click * mean_watch_click + (1 - p_click) * SKIP_WATCH / 2
    return {
        "p_long_view": p_click * p_long_given_click,
        "expected_play_ms": mean_watch * duration_ms,
    }


def latent_affinity(a: Column, b: Column) -> Column:
    """Dot product of two latent arrays (unit vectors: their cosine)."""
    return _dot(a, b)


def _dot(a: Column, b: Column) -> Column:
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, x: acc + x)


def _flag(c: Column) -> Column:
    return F.when(c, 1).otherwise(0)


def generate_day_events(
    spark: SparkSession,
    pop_users: DataFrame,
    pop_items: DataFrame,
    cfg: GeneratorConfig,
    day: dt.date,
    n_items: int,
    dirty_rate: float = 0.0,
) -> DataFrame:
    """One day's raw log rows (KuaiRand columns, all as strings, as in a CSV export)."""
    seed, day_no = cfg.seed, F.lit(day.toordinal())
    day_index = (day - dt.date.fromisoformat(cfg.start_date)).days
    late = F.lit(day_index >= cfg.days - cfg.late_days)
    as_anyone = _uniform(seed, "active", F.col("uid"), day_no) < F.col("p_active")
    debut = (F.col("cohort") == SPARSE) & (F.col("debut_day") == day_index)
    active = (
        F.when(F.col("cohort") == REGULAR, as_anyone)
        .when(debut, F.lit(True))
        .otherwise(late & as_anyone)
    )
    u = pop_users.where(active)
    n_events = (
        F.when(debut, F.col("debut_events"))
        .otherwise(
            F.floor(F.col("events_per_day") * (0.5 + _uniform(seed, "n", F.col("uid"), day_no))) + 1
        )
        .cast("int")
    )
    ev = u.withColumn("k", F.explode(F.sequence(F.lit(0), n_events - 1)))
    key = (F.col("uid"), day_no, F.col("k"))
    # `targeted_share` of the exposures come from the user's group's favourite topic (what
    # a recommender would show), the rest from a popularity-skewed draw over the catalogue.
    per_topic = max(1, n_items // cfg.topics)
    from_topic = F.col("fav_topic") + cfg.topics * F.floor(
        _uniform(seed, "it", *key) * per_topic
    ).cast("long")
    popular = F.floor(F.pow(_uniform(seed, "ip", *key), cfg.popularity_skew) * n_items)
    ev = ev.withColumn(
        "iid",
        F.when(
            _uniform(seed, "src", *key) < cfg.targeted_share,
            F.least(from_topic, F.lit(n_items - 1)),
        ).otherwise(popular.cast("long")),
    )
    ev = ev.join(F.broadcast(pop_items), "iid")
    aff = _dot(F.col("u_latent"), F.col("i_latent"))  # cosine of unit vectors, in [-1, 1]

    r: Callable[[str], Column] = lambda salt: _uniform(seed, salt, *key)  # noqa: E731
    click = r("click") < click_probability(aff)
    watch = F.when(
        click, WATCH_SCALE * _sigmoid(WATCH_SLOPE * aff + WATCH_SPREAD * (r("watch") - 0.5))
    ).otherwise(SKIP_WATCH * r("watch"))
    long_view = click & (watch > LONG_VIEW_WATCH)
    like = long_view & (r("like") < _sigmoid(4.0 * aff - 2.0))
    ts_ms = F.lit(
        int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    ) + F.floor(r("ts") * 86_400_000).cast("long")
    ev = ev.select(
        F.col("user_id"),
        F.col("video_id"),
        F.lit(day.strftime("%Y%m%d")).alias("date"),
        F.date_format(F.timestamp_millis(ts_ms), "HHmm").alias("hourmin"),
        ts_ms.alias("time_ms"),
        _flag(click).alias("is_click"),
        _flag(like).alias("is_like"),
        _flag(like & (r("follow") < 0.08)).alias("is_follow"),
        _flag(click & (r("comment") < _sigmoid(4.0 * aff - 4.0))).alias("is_comment"),
        _flag(like & (r("share") < 0.15)).alias("is_forward"),
        _flag(~click & (r("hate") < _sigmoid(-4.0 * aff - 3.0))).alias("is_hate"),
        _flag(long_view).alias("long_view"),
        F.floor(watch * F.col("duration_ms")).cast("long").alias("play_time_ms"),
        F.col("duration_ms"),
        F.floor(r("tab") * 6).cast("int").alias("tab"),
        F.col("k"),
        F.col("uid"),
    )
    ev = ev.select(*[F.col(c).cast("string").alias(c) for c in LOG_COLUMNS], "k", "uid")
    if dirty_rate > 0:
        ev = _inject_dirty_rows(ev, seed, day_no, dirty_rate)
    return ev.drop("k", "uid")


def _inject_dirty_rows(ev: DataFrame, seed: int, day_no: Column, rate: float) -> DataFrame:
    """Corrupt a small share of rows the way real exports go wrong, and add duplicates."""
    key = (F.col("uid"), day_no, F.col("k"))
    h = _uniform(seed, "dirty", *key)
    kind = F.floor(_uniform(seed, "dirty-kind", *key) * 5)
    dirty = h < rate
    ev = ev.withColumns(
        {
            "user_id": F.when(dirty & (kind == 0), F.lit(None)).otherwise(F.col("user_id")),
            "play_time_ms": F.when(dirty & (kind == 1), F.lit("-1500")).otherwise(
                F.col("play_time_ms")
            ),
            "is_click": F.when(dirty & (kind == 2), F.lit("7")).otherwise(F.col("is_click")),
            "time_ms": F.when(dirty & (kind == 3), F.lit("not-a-time")).otherwise(F.col("time_ms")),
        }
    )
    dupes = ev.where(dirty & (kind == 4))
    return ev.unionByName(dupes)


def population_frames(
    spark: SparkSession, pop: Population, partitions: int
) -> tuple[DataFrame, DataFrame]:
    """The users and items as `generate_day_events` reads them."""
    users = pop.users.assign(
        uid=np.arange(len(pop.users)), fav_topic=pop.group_topic[pop.users["group"]]
    )
    items = pop.items.assign(iid=np.arange(len(pop.items)))
    user_cols = ["uid", "user_id", "p_active", "events_per_day", "fav_topic", "cohort",
                 "debut_day", "debut_events"]  # fmt: skip
    u_df = spark.createDataFrame(
        users[user_cols].assign(u_latent=users["latent"].map(list))
    ).repartition(partitions)
    i_df = spark.createDataFrame(
        items[["iid", "video_id", "duration_ms"]].assign(i_latent=items["latent"].map(list))
    )
    return u_df.withColumn("fav_topic", F.col("fav_topic").cast("long")), i_df


def generate(
    spark: SparkSession,
    cfg: GeneratorConfig,
    out: str,
    dirty_rate: float = 0.0,
    log: Callable[[str], None] = print,
) -> Population:
    """Write `cfg.days` daily drops, the profile files and the truth under `out`."""
    out_path = Path(out)
    pop = draw_population(cfg)
    u_df, i_df = population_frames(spark, pop, cfg.partitions)
    u_df, i_df = u_df.cache(), i_df.cache()
    n_items = len(pop.items)

    start = dt.date.fromisoformat(cfg.start_date)
    for i in range(cfg.days):
        day = start + dt.timedelta(days=i)
        events = generate_day_events(spark, u_df, i_df, cfg, day, n_items, dirty_rate)
        day_dir = out_path / LOG_DIR / day.isoformat()
        events = events.coalesce(max(1, cfg.partitions // 4)).cache()
        n = events.count()
        for fmt in cfg.formats:
            writer = events.write.mode("overwrite")
            if fmt == "csv":
                writer.option("header", True).csv(str(day_dir / "csv"))
            elif fmt == "parquet":
                writer.parquet(str(day_dir / "parquet"))
            else:
                raise ValueError(f"generator.formats: unknown format {fmt!r} (csv, parquet)")
        events.unpersist()
        log(f"[generate] {day.isoformat()}  {n:>9,d} events  ({i + 1}/{cfg.days})")

    _write_profiles_and_truth(pop, out_path, cfg, dirty_rate)
    u_df.unpersist()
    i_df.unpersist()
    return pop


def _write_profiles_and_truth(
    pop: Population, out: Path, cfg: GeneratorConfig, dirty_rate: float
) -> None:
    (out / "users").mkdir(parents=True, exist_ok=True)
    (out / "items").mkdir(parents=True, exist_ok=True)
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    profile = ["user_id", "gender", "age_range", "register_days", "follow_user_num", "community"]
    pop.users[profile].to_csv(out / USERS_FILE, index=False)
    pop.items[["video_id", "category", "author_id", "duration_ms"]].to_csv(
        out / ITEMS_FILE, index=False
    )
    truth_users = pop.users[["user_id", "group", "p_active", "events_per_day"]].copy()
    truth_users["cohort"] = np.asarray(COHORT_NAMES)[pop.users["cohort"]]
    truth_users["latent"] = pop.users["latent"].map(lambda v: v.astype("float32").tolist())
    truth_users.to_parquet(out / TRUTH_DIR / "users.parquet", index=False)
    truth_items = pop.items[["video_id", "topic"]].copy()
    truth_items["latent"] = pop.items["latent"].map(lambda v: v.astype("float32").tolist())
    truth_items.to_parquet(out / TRUTH_DIR / "items.parquet", index=False)
    np.save(out / TRUTH_DIR / "group_topic.npy", pop.group_topic)
    (out / MANIFEST).write_text(
        json.dumps({"generator": asdict(cfg), "dirty_rate": dirty_rate}, indent=2) + "\n"
    )
