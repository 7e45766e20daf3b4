import dataclasses
import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from duia_spark.config import GeneratorConfig
from duia_spark.sources.synthetic import (
    draw_population,
    generate,
    generate_day_events,
    population_frames,
)

SMALL = GeneratorConfig(users=400, items=120, days=30, seed=7, partitions=2)


def _events(spark, cfg: GeneratorConfig):
    pop = draw_population(cfg)
    u_df, i_df = population_frames(spark, pop, cfg.partitions)
    start = dt.date.fromisoformat(cfg.start_date)
    days = [
        generate_day_events(spark, u_df, i_df, cfg, start + dt.timedelta(days=i), cfg.items)
        for i in range(cfg.days)
    ]
    out = days[0]
    for d in days[1:]:
        out = out.unionByName(d)
    return pop, out


@pytest.fixture(scope="module")
def month(spark):
    pop, ev = _events(spark, SMALL)
    return pop, ev.cache()


def test_the_same_seed_writes_identical_drops_and_another_seed_does_not(spark, tmp_path):
    cfg = dataclasses.replace(SMALL, users=60, items=30, days=2)
    generate(spark, cfg, str(tmp_path / "a"), log=lambda _: None)
    generate(spark, cfg, str(tmp_path / "b"), log=lambda _: None)
    generate(spark, dataclasses.replace(cfg, seed=8), str(tmp_path / "c"), log=lambda _: None)

    def read(d):
        return spark.read.options(header=True, recursiveFileLookup=True).csv(
            str(tmp_path / d / "log")
        )

    a, b, c = read("a"), read("b"), read("c")
    assert a.count() > 0
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0
    assert a.exceptAll(c).count() > 0
    assert (tmp_path / "a" / "truth" / "users.parquet").exists()


def test_at_least_a_third_of_users_are_low_active(month):
    _, ev = month
    per_user = ev.groupBy("user_id").agg(
        F.countDistinct("date").alias("active_days"),
        F.sum(F.col("long_view").cast("int")).alias("valid"),
    )
    n_low = per_user.where((F.col("active_days") < 5) | (F.col("valid") < 20)).count()
    n_seen = per_user.count()
    n_low += SMALL.users - n_seen  # users with no events at all are low-active too
    assert n_low / SMALL.users >= 1 / 3
    # ... and the tail is heavy: some users are active on most days.
    assert per_user.where(F.col("active_days") >= 20).count() >= 0.05 * SMALL.users


def test_planted_groups_show_in_the_signals(spark, month):
    pop, ev = month
    truth_u = spark.createDataFrame(pop.users[["user_id", "group"]])
    truth_i = spark.createDataFrame(pop.items[["video_id", "topic"]])
    fav = spark.createDataFrame(
        [(int(g), int(t)) for g, t in enumerate(pop.group_topic)], "group int, fav_topic int"
    )
    joined = ev.join(truth_u, "user_id").join(truth_i, "video_id").join(fav, "group")
    rates = {
        r["is_fav"]: r["ctr"]
        for r in joined.groupBy((F.col("topic") == F.col("fav_topic")).alias("is_fav"))
        .agg(F.avg(F.col("is_click").cast("double")).alias("ctr"))
        .collect()
    }
    assert rates[True] > rates[False] + 0.15
    # Users of one group agree with each other: their per-topic click rates correlate.
    prof = (
        joined.groupBy("group", "topic")
        .agg(F.avg(F.col("is_click").cast("double")).alias("ctr"))
        .toPandas()
        .pivot(index="group", columns="topic", values="ctr")
    )
    best_topic = prof.to_numpy().argmax(axis=1)
    assert (best_topic == pop.group_topic[prof.index.to_numpy()]).mean() >= 0.75


def test_the_closed_form_expectations_match_the_generated_signals(spark, month):
    from duia_spark.sources.synthetic import expected_outcomes, latent_affinity

    pop, ev = month
    users = spark.createDataFrame(pop.users[["user_id"]].assign(u=pop.users["latent"].map(list)))
    items = spark.createDataFrame(pop.items[["video_id"]].assign(i=pop.items["latent"].map(list)))
    joined = ev.join(users, "user_id").join(items, "video_id")
    exp = expected_outcomes(
        latent_affinity(F.col("u"), F.col("i")), F.col("duration_ms").cast("double")
    )
    row = joined.agg(
        F.avg(F.col("long_view").cast("double")).alias("lv"),
        F.avg(exp["p_long_view"]).alias("p_lv"),
        F.avg(F.col("play_time_ms").cast("double")).alias("play"),
        F.avg(exp["expected_play_ms"]).alias("e_play"),
    ).first()
    assert row["lv"] == pytest.approx(row["p_lv"], rel=0.05)
    assert row["play"] == pytest.approx(row["e_play"], rel=0.05)


# ------------------------------------------------------------------ DUIA's premise knobs
def _community_group_ami(cfg: GeneratorConfig) -> float:
    from duia_spark.evaluation.cluster_recovery import adjusted_mutual_information

    users = draw_population(cfg).users
    return adjusted_mutual_information(users["group"], users["community"])


def test_an_uninformative_profile_is_independent_of_the_group_and_an_informative_one_names_it():
    base = dataclasses.replace(SMALL, users=3000, groups=16)
    assert abs(_community_group_ami(base)) < 0.01  # profile_informativeness 0, the default
    half = _community_group_ami(dataclasses.replace(base, profile_informativeness=0.5))
    assert 0.1 < half < 0.9
    assert _community_group_ami(dataclasses.replace(base, profile_informativeness=1.0)) == 1.0


def test_groups_and_topics_come_in_the_numbers_asked_and_the_knobs_leave_the_rest_alone():
    cfg = dataclasses.replace(SMALL, users=3000, items=1024, groups=64, topics=256, latent_dim=32)
    pop = draw_population(cfg)
    assert pop.users["group"].nunique() == 64
    assert pop.items["topic"].nunique() == 256
    assert len(pop.group_topic) == 64 and pop.group_topic.max() < 256
    moved = draw_population(
        dataclasses.replace(cfg, profile_informativeness=0.7, sparse_user_share=0.4)
    )
    for col in ("group", "p_active", "events_per_day", "gender"):
        assert (moved.users[col] == pop.users[col]).all(), col
    assert np.allclose(np.stack(moved.users["latent"]), np.stack(pop.users["latent"]))


def test_sparse_users_are_seen_once_before_the_late_days_and_new_users_not_at_all(spark):
    cfg = dataclasses.replace(
        SMALL, users=300, days=12, late_days=3, debut_days=4, sparse_user_share=0.3,
        new_user_share=0.2, sparse_user_events=[2, 4],
    )  # fmt: skip
    pop, ev = _events(spark, cfg)
    late_start = (dt.date.fromisoformat(cfg.start_date) + dt.timedelta(days=9)).strftime("%Y%m%d")
    cohorts = spark.createDataFrame(pop.users[["user_id", "cohort", "debut_events"]])
    early = (
        ev.where(F.col("date") < late_start)
        .groupBy("user_id")
        .agg(F.countDistinct("date").alias("days"), F.count("*").alias("events"))
    )
    per_user = cohorts.join(early, "user_id", "left").toPandas()  # 300 users
    sparse = per_user[per_user.cohort == 1]
    assert len(sparse) > 50
    assert (sparse["days"] == 1).all()
    assert (sparse["events"] == sparse["debut_events"]).all()
    assert sparse["events"].between(2, 4).all()
    new = per_user[per_user.cohort == 2]
    assert len(new) > 30 and new["events"].isna().all()
    # In the late days they come back as anyone does.
    late_users = set(
        ev.where(F.col("date") >= late_start).select("user_id").distinct().toPandas().user_id
    )
    assert len(late_users & set(sparse.user_id)) > 0.3 * len(sparse)
    assert len(late_users & set(new.user_id)) > 0.3 * len(new)


def test_impossible_premise_settings_are_refused_by_name():
    from duia_spark.config import ConfigError

    with pytest.raises(ConfigError, match="generator.sparse_user_share"):
        dataclasses.replace(SMALL, sparse_user_share=0.8, new_user_share=0.4)
    with pytest.raises(ConfigError, match="generator.sparse_user_events"):
        dataclasses.replace(SMALL, sparse_user_events=[3, 1])
    with pytest.raises(ConfigError, match="generator.profile_informativeness"):
        dataclasses.replace(SMALL, profile_informativeness=1.5)
