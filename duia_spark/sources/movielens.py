"""MovieLens in RecBole's atomic-file layout (`.inter`, `.user`, `.item`): ratings become
exposures of the canonical raw frame."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from duia_spark.sources.delimited import (
    read_delimited_file,
)
from duia_spark.sources.raw import RawDrop, RawInputError

# MovieLens-1M codes age as the lower bound of a range (README of ML-1M); the ranges are
# passed on so the samples read their middle. "Under 18" has no lower bound: unknown.
ML1M_AGE_RANGES = {
    "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+",
}  # fmt: skip


def title_item_id(title: Column) -> Column:
    """ML-1M's RecBole export keys items by title ("Toy Story (1995)"), which is not a
    valid id; the id becomes "m" + the first 16 hex digits of the title's SHA-256:
    stable across runs and files, and the same in events and item features."""
    return F.concat(F.lit("m"), F.substring(F.sha2(F.col(title), 256), 1, 16))


def movielens_files(folder: Path) -> tuple[Path, Path | None, Path | None]:
    """The (.inter, .user, .item) files of a RecBole MovieLens export (`ml-100k`,
    `ml-1m`, ...) in `folder`; profiles and item features are optional."""
    inters = sorted(folder.glob("ml-*.inter"))
    if len(inters) != 1:
        found = ", ".join(p.name for p in inters) or "none"
        raise RawInputError(f"{folder}: expected one MovieLens file ml-*.inter, found {found}")
    stem = inters[0].with_suffix("")
    user, item = stem.with_suffix(".user"), stem.with_suffix(".item")
    return inters[0], user if user.exists() else None, item if item.exists() else None


def read_movielens(spark: SparkSession, path: str) -> RawDrop:
    """MovieLens in RecBole's layout (`ml-100k.inter|.user|.item`, or `ml-1m.*`; typed
    headers). ML-100K ages are years; ML-1M ages are range codes, read as the range, and
    its items are keyed by title, re-keyed by `title_item_id`.

    A rating is an exposure (click = 1); a rating >= 4 is a like and a long view.
    Other signals are not in the data and stay null.
    """
    inter, user_file, item_file = movielens_files(Path(path))
    ml1m = inter.name == "ml-1m.inter"
    rename = {"user_id": "user_id", "item_id": "item_id", "timestamp": "time_ms", "rating": "like"}
    ev = read_delimited_file(
        spark,
        str(inter),
        "\t",
        rename,
        ("user_id", "item_id", "rating", "timestamp"),
        None,
        header_type_suffix=True,
    )
    rating = _as_number(F.col("like"))
    seconds = _as_number(F.col("time_ms"))
    ev = ev.withColumns(
        {
            "time_ms": F.when(seconds.isNull(), F.col("time_ms")).otherwise(
                (seconds * 1000).cast("long").cast("string")
            ),
            "click": F.when(rating.isNotNull(), F.lit("1")).otherwise(F.col("like")),
            "like": F.when(rating.isNull(), F.col("like")).otherwise(
                F.when(rating >= 4, "1").otherwise("0")
            ),
        }
    ).withColumn("long_view", F.when(rating.isNull(), F.lit(None)).otherwise(F.col("like")))
    if ml1m:
        ev = ev.withColumn("item_id", title_item_id("item_id"))
    users = items = None
    if user_file is not None:
        u = _read_recbole_table(spark, user_file)
        age = F.trim(F.col("age"))
        if ml1m:
            codes = F.create_map(*[F.lit(x) for kv in ML1M_AGE_RANGES.items() for x in kv])
            age = codes[_as_number(age).cast("int").cast("string")]  # "25.0" -> "25"
        users = u.select(
            "user_id",
            F.col("gender").alias("gender"),
            age.alias("age_range"),
            F.lit(None).cast("string").alias("register_days"),
            F.lit(None).cast("string").alias("follow_user_num"),
        )
    if item_file is not None:
        i = _read_recbole_table(spark, item_file)
        genres = "class" if "class" in i.columns else "genre"
        items = i.select(
            title_item_id("item_id").alias("item_id") if ml1m else F.col("item_id"),
            F.split(F.col(genres), " ").getItem(0).alias("category"),
            F.lit(None).cast("string").alias("author_id"),
            F.lit(None).cast("string").alias("duration_ms"),
        )
    return RawDrop(events=ev, users=users, items=items)


def _as_number(c: Column) -> Column:
    """A numeric string as double, anything else null (never an ANSI cast error)."""
    return F.when(F.trim(c).rlike(r"^-?[0-9]+(\.[0-9]*)?$"), F.trim(c).cast("double"))


def _read_recbole_table(spark: SparkSession, file: Path) -> DataFrame:
    df = spark.read.option("header", True).option("sep", "\t").csv(str(file))
    return df.toDF(*[c.split(":", 1)[0] for c in df.columns])
