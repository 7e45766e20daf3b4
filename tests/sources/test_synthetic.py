import dataclasses
import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from duia_spark.config import GeneratorConfig
from duia_spark.sources.synthetic import draw_population, generate, generate_day_events

SMALL = GeneratorConfig(users=400, items=120, days=30, seed=7, partitions=2)


def _events(spark, cfg: GeneratorConfig):
    pop = draw_population(cfg)
    users = pop.users.assign(
        uid=np.arange(cfg.users), fav_topic=pop.group_topic[pop.users["group"]]
    )
    u_df = spark.createDataFrame(
        users[["uid", "user_id", "p_active", "events_per_day", "fav_topic"]].assign(
            u_latent=users["latent"].map(list)
        )
    ).withColumn("fav_topic", F.col("fav_topic").cast("long"))
    items = pop.items.assign(iid=np.arange(cfg.items))
    i_df = spark.createDataFrame(
        items[["iid", "video_id", "duration_ms"]].assign(i_latent=items["latent"].map(list))
    )
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
