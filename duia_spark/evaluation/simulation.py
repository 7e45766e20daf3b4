"""Simulated feed replay against the generator's ground truth — the offline stand-in
for the online A/B test of the DUIA paper.

Each model ranks every user's exposures of a day; the top `feed_size` form the feed
(one feed per user and `sample_date` when the rows carry it: a validation window of
several days holds several feeds of a user).
From the true latent vectors we know, for each shown item, the probability of a valid
view and the expected play time, so per user: UVC-like = expected valid views in the
feed, UDT-like = expected dwell seconds. Averaged per activity segment. An oracle
(ranking by the true valid-view probability) bounds what any model could reach.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from duia_spark.sources.synthetic import expected_outcomes, latent_affinity

ORACLE = "oracle"


def with_ground_truth(
    scored: DataFrame, truth_users: DataFrame, truth_items: DataFrame
) -> DataFrame:
    """Attach `p_long_view` and `expected_play_ms` from the true latent vectors."""
    u = truth_users.select("user_id", F.col("latent").alias("_u"))
    i = truth_items.select(F.col("video_id").alias("item_id"), F.col("latent").alias("_i"))
    joined = scored.join(F.broadcast(i), "item_id").join(u, "user_id")
    exp = expected_outcomes(
        latent_affinity(F.col("_u"), F.col("_i")), F.col("duration_ms").cast("double")
    )
    return joined.withColumns(exp).drop("_u", "_i")


def simulate_feeds(
    truth_scored: DataFrame, rank_columns: dict[str, str], feed_size: int
) -> DataFrame:
    """(model, segment, users, uvc, udt_s) for every model in `rank_columns` (model →
    score column) plus the oracle; segment includes "all"; `users` counts feeds."""
    rank_columns = {**rank_columns, ORACLE: "p_long_view"}
    feed_key = ["user_id", *[c for c in ("sample_date",) if c in truth_scored.columns]]
    parts = []
    for model, col in rank_columns.items():
        w = Window.partitionBy(*feed_key).orderBy(F.col(col).desc(), F.col("item_id"))
        feed = truth_scored.withColumn("_pos", F.row_number().over(w)).where(
            F.col("_pos") <= feed_size
        )
        per_user = feed.groupBy(*feed_key, "segment").agg(
            F.sum("p_long_view").alias("uvc"), (F.sum("expected_play_ms") / 1000.0).alias("udt_s")
        )
        per_user = per_user.unionByName(per_user.withColumn("segment", F.lit("all")))
        parts.append(
            per_user.groupBy("segment").agg(
                F.lit(model).alias("model"),
                F.count("*").alias("users"),
                F.avg("uvc").alias("uvc"),
                F.avg("udt_s").alias("udt_s"),
            )
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out
