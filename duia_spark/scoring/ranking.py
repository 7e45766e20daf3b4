"""Per-task scores → one ranking score, rank within user, top-K: gold.scores rows. Pure."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.contract import task_score_column


def effective_task_weights(weights: dict[str, float], tasks: list[str]) -> dict[str, float]:
    """The weights of the model's tasks (unlisted tasks weigh 0); fail if none is left."""
    used = {t: float(weights.get(t, 0.0)) for t in tasks}
    if not any(used.values()):
        raise ValueError(
            f"score.task_weights {weights} gives no weight to any task of the model {tasks}"
        )
    return used


def scores_schema(tasks: list[str]) -> T.StructType:
    """gold.scores: the key, one float per model task, the combined score, the rank."""
    fields = [
        T.StructField("user_id", T.StringType(), True),
        T.StructField("item_id", T.StringType(), True),
        *[T.StructField(task_score_column(t), T.FloatType(), True) for t in tasks],
        T.StructField("score", T.DoubleType(), True),
        T.StructField("rank", T.IntegerType(), True),
        T.StructField("model_version", T.StringType(), True),
        T.StructField("score_date", T.DateType(), True),
    ]
    return T.StructType(fields)


def rank_top_k(
    task_scores: DataFrame,
    weights: dict[str, float],
    top_k: int,
    day: dt.date,
    model_version: str,
) -> DataFrame:
    """The `top_k` rows per user by score = sum(weight x task score), rank 1 = best
    (ties: item_id), in `scores_schema` column order."""
    tasks = list(weights)
    combined = sum(
        (F.lit(w) * F.col(task_score_column(t)).cast("double") for t, w in weights.items()),
        F.lit(0.0),
    )
    w = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("item_id"))
    ranked = (
        task_scores.withColumn("score", combined)
        .withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= top_k)
        .withColumn("model_version", F.lit(model_version))
        .withColumn("score_date", F.lit(day))
    )
    return ranked.select(*[F.col(f.name).cast(f.dataType) for f in scores_schema(tasks).fields])
