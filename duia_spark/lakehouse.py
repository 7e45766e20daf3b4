"""The one place that knows table names, paths, partitioning and Delta write modes.

Every write here is a single Delta transaction: a crash mid-write leaves the
table as it was, and re-writing a partition replaces it instead of appending.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructField, StructType

from duia_spark.config import Config


class TableNotFoundError(RuntimeError):
    """A stage needs a table that no earlier stage has written yet."""


def _sql_literal(value: object) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _comparable(df: DataFrame, field: StructField) -> Column:
    """A column Spark can compare: a map (no equality in Spark) becomes the JSON of its
    entries sorted by key, so two maps holding the same pairs compare equal."""
    if isinstance(field.dataType, MapType):
        return F.to_json(F.array_sort(F.map_entries(df[field.name])))
    return df[field.name]


def _has_map_inside(tp: DataType) -> bool:
    if isinstance(tp, MapType):
        return True
    if isinstance(tp, ArrayType):
        return _has_map_inside(tp.elementType)
    if isinstance(tp, StructType):
        return any(_has_map_inside(f.dataType) for f in tp.fields)
    return False


def changed_rows(source: DataFrame, target: DataFrame) -> DataFrame | None:
    """The rows of `source` that are not already in `target` as they stand (compared
    null-safely on every column; a map column by its entries), or None when they cannot
    be compared: the source brings a column the target lacks, or a column holding a map
    inside an array or a struct."""
    have = {f.name: f for f in target.schema.fields}
    for f in source.schema.fields:
        if f.name not in have or isinstance(f.dataType, MapType) != isinstance(
            have[f.name].dataType, MapType
        ):
            return None
        if not isinstance(f.dataType, MapType) and _has_map_inside(f.dataType):
            return None
    same = [
        _comparable(source, f).eqNullSafe(_comparable(target, have[f.name]))
        for f in source.schema.fields
    ]
    return source.join(target, same, "left_anti")


class Lakehouse:
    """Delta tables under one root folder (local path, hdfs://, s3a://, ...)."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark = spark
        self.root = cfg.lakehouse_root.rstrip("/")
        self.tables = cfg.lakehouse.tables

    def path(self, table: str) -> str:
        """Path of a table by its config key, e.g. `path("events")`."""
        return f"{self.root}/{getattr(self.tables, table)}"

    def exists(self, table: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path(table))

    def read(self, table: str) -> DataFrame:
        if not self.exists(table):
            raise TableNotFoundError(
                f"Delta table '{table}' not found at {self.path(table)}; run the stage that writes it first"
            )
        return self.spark.read.format("delta").load(self.path(table))

    def read_path(self, path: str) -> DataFrame:
        """A table outside the lakehouse (e.g. supplied candidates): Delta if it is one,
        else Parquet."""
        if DeltaTable.isDeltaTable(self.spark, path):
            return self.spark.read.format("delta").load(path)
        return self.spark.read.parquet(path)

    def read_or_empty(self, table: str, schema: StructType) -> DataFrame:
        if self.exists(table):
            return self.read(table)
        return self.spark.createDataFrame([], schema)

    def version(self, table: str) -> int | None:
        """Latest Delta version of a table (for lineage), None if it does not exist."""
        if not self.exists(table):
            return None
        hist = DeltaTable.forPath(self.spark, self.path(table)).history(1)
        return int(hist.select("version").first()[0])

    def replace_partitions(
        self,
        df: DataFrame,
        table: str,
        partition_col: str,
        values: Iterable[object],
        extra_predicate: str | None = None,
        summary: Sequence[Column] = (),
    ) -> dict[str, Any]:
        """Atomically replace the given partitions with `df` (idempotent re-runs).

        Rows of `df` outside `values` make Delta refuse the whole write, so a bug can
        never spill into a neighbouring date. `summary`: named aggregates of the rows
        written (`F.count(F.lit(1)).alias("rows")`, ...), gathered while writing them
        (Spark's observed metrics), so a stage's report costs no second read of what
        it wrote. -> their values by name ({} without a summary).
        """
        values = sorted(set(values))
        if not values:
            raise ValueError(f"replace_partitions({table}): no partition values given")
        predicate = f"{partition_col} IN ({', '.join(_sql_literal(v) for v in values)})"
        if extra_predicate:
            predicate = f"({predicate}) AND ({extra_predicate})"
        return self._overwrite_partitions(
            df, table, partition_col, "replaceWhere", predicate, summary
        )

    def replace_partitions_written(
        self, df: DataFrame, table: str, partition_col: str, summary: Sequence[Column] = ()
    ) -> dict[str, Any]:
        """Atomically replace the partitions `df` has rows in (Delta's dynamic partition
        overwrite), for a write whose partitions are only known once its rows are: the
        other partitions stay as they are, and an empty `df` changes nothing (on a table
        that does not exist yet it creates the table, empty). `summary`
        as in `replace_partitions`."""
        return self._overwrite_partitions(
            df, table, partition_col, "partitionOverwriteMode", "dynamic", summary
        )

    def _overwrite_partitions(
        self,
        df: DataFrame,
        table: str,
        partition_col: str,
        option: str,
        value: str,
        summary: Sequence[Column] = (),
    ) -> dict[str, Any]:
        """One Delta overwrite of some partitions of `table`, chosen by `option`;
        `summary` observed on the way."""
        observation = None
        if summary:
            observation = Observation(f"{table}-{uuid.uuid4().hex[:12]}")
            df = df.observe(observation, *summary)
        (
            df.write.format("delta")
            .mode("overwrite")
            .option(option, value)
            .option("mergeSchema", "true")  # new nullable columns join older tables
            .partitionBy(partition_col)
            .save(self.path(table))
        )
        return dict(observation.get) if observation is not None else {}

    def overwrite(self, df: DataFrame, table: str) -> None:
        """Replace a whole (small, unpartitioned) table in one transaction."""
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            self.path(table)
        )

    def upsert(self, df: DataFrame, table: str, keys: list[str]) -> None:
        """MERGE `df` into `table` on `keys`: update matches that changed, insert the rest.

        Rows already in the table as they are never reach the MERGE (Delta would rewrite
        every file a matched row lives in, changed or not), so re-sending an unchanged
        profile table (every night's drop carries one) commits nothing.
        """
        if not self.exists(table):
            df.write.format("delta").mode("overwrite").save(self.path(table))
            return
        target = DeltaTable.forPath(self.spark, self.path(table))
        changed = changed_rows(df, target.toDF())
        if changed is not None:
            if changed.isEmpty():
                return
            df = changed
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        (
            target.alias("t")
            .merge(df.alias("s"), cond)
            .withSchemaEvolution()  # new nullable columns (profile attributes) join
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    def update_rows(self, table: str, condition: Column, values: dict[str, Column]) -> None:
        """UPDATE the rows of `table` that meet `condition` (one Delta commit)."""
        DeltaTable.forPath(self.spark, self.path(table)).update(condition=condition, set=values)

    def append_new(self, df: DataFrame, table: str, keys: list[str]) -> None:
        """Insert only rows whose keys are not in the table yet (never updates)."""
        if not self.exists(table):
            df.write.format("delta").mode("overwrite").save(self.path(table))
            return
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        (
            DeltaTable.forPath(self.spark, self.path(table))
            .alias("t")
            .merge(df.alias("s"), cond)
            .whenNotMatchedInsertAll()
            .execute()
        )
