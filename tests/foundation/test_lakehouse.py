import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.lakehouse import TableNotFoundError

D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


def _frame(spark, rows):
    schema = T.StructType(
        [T.StructField("user_id", T.StringType()), T.StructField("event_date", T.DateType())]
    )
    return spark.createDataFrame(rows, schema)


def test_replacing_a_partition_twice_does_not_duplicate_and_spares_other_dates(spark, lake):
    lake.replace_partitions(_frame(spark, [("a", D1), ("b", D2)]), "events", "event_date", [D1, D2])
    again = _frame(spark, [("a", D1), ("c", D1)])
    lake.replace_partitions(again, "events", "event_date", [D1])
    lake.replace_partitions(again, "events", "event_date", [D1])
    rows = sorted((r.user_id, r.event_date) for r in lake.read("events").collect())
    assert rows == [("a", D1), ("b", D2), ("c", D1)]


def test_a_partition_write_reports_the_summary_of_the_rows_it_wrote(spark, lake):
    rows = _frame(spark, [("a", D1), ("b", D1), ("a", D1)])
    summary = [
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("user_id") == "a").alias("a_rows"),
    ]
    got = lake.replace_partitions(rows, "events", "event_date", [D1], summary=summary)
    assert got == {"rows": 3, "a_rows": 2}
    empty = rows.where(F.lit(False))
    assert lake.replace_partitions(empty, "events", "event_date", [D1], summary=summary) == {
        "rows": 0,
        "a_rows": 0,
    }
    assert lake.replace_partitions(rows, "events", "event_date", [D1]) == {}
    assert lake.read("events").count() == 3


def test_a_write_replacing_the_partitions_it_has_rows_in_spares_the_others(spark, lake):
    lake.replace_partitions(_frame(spark, [("a", D1), ("b", D2)]), "events", "event_date", [D1, D2])
    summary = [F.count(F.lit(1)).alias("rows")]
    again = _frame(spark, [("c", D1), ("d", D1)])
    assert lake.replace_partitions_written(again, "events", "event_date", summary) == {"rows": 2}
    assert lake.replace_partitions_written(again, "events", "event_date") == {}
    rows = sorted((r.user_id, r.event_date) for r in lake.read("events").collect())
    assert rows == [("b", D2), ("c", D1), ("d", D1)]
    version = lake.version("events")
    empty = again.where(F.lit(False))
    assert lake.replace_partitions_written(empty, "events", "event_date", summary) == {"rows": 0}
    assert lake.version("events") == version  # nothing to replace: no commit


def test_a_write_that_fails_midway_leaves_the_table_as_it_was(spark, lake):
    lake.replace_partitions(_frame(spark, [("a", D1)]), "events", "event_date", [D1])
    before = lake.version("events")

    @F.udf("string")
    def explode_on_b(u):
        if u == "b":
            raise RuntimeError("simulated crash while writing")
        return u

    bad = _frame(spark, [("x", D1), ("b", D1)]).withColumn("user_id", explode_on_b("user_id"))
    with pytest.raises(Exception, match="simulated crash"):
        lake.replace_partitions(bad, "events", "event_date", [D1])
    assert lake.version("events") == before
    assert [r.user_id for r in lake.read("events").collect()] == ["a"]


def test_rows_outside_the_replaced_partition_are_refused(spark, lake):
    lake.replace_partitions(_frame(spark, [("a", D1)]), "events", "event_date", [D1])
    with pytest.raises(Exception, match="(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        lake.replace_partitions(_frame(spark, [("z", D2)]), "events", "event_date", [D1])
    assert [r.user_id for r in lake.read("events").collect()] == ["a"]


def test_reading_a_table_nobody_wrote_names_the_table(lake):
    with pytest.raises(TableNotFoundError, match="user_sequences"):
        lake.read("user_sequences")


def _merge_metrics(spark, lake, table: str) -> dict:
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, lake.path(table)).history(1).first()
    return {k: int(v) for k, v in last["operationMetrics"].items() if v.isdigit()}


def test_an_upsert_rewrites_only_the_rows_that_changed(spark, lake):
    schema = "user_id string, register_days int, gender string"

    def upsert(rows):
        lake.upsert(spark.createDataFrame(rows, schema), "user_profiles", ["user_id"])

    upsert([("u1", 10, "F"), ("u2", 5, None)])
    before = lake.version("user_profiles")
    upsert([("u1", 10, "F"), ("u2", 5, None)])
    assert lake.version("user_profiles") == before  # unchanged (a null equals a null): no commit
    upsert([("u1", 11, "F"), ("u2", 5, None), ("u3", 1, "M")])
    changed = _merge_metrics(spark, lake, "user_profiles")
    assert changed["numSourceRows"] == 2  # u2, unchanged, never reached the MERGE
    assert changed["numTargetRowsUpdated"] == 1
    assert changed["numTargetRowsInserted"] == 1
    rows = sorted(tuple(r) for r in lake.read("user_profiles").collect())
    assert rows == [("u1", 11, "F"), ("u2", 5, None), ("u3", 1, "M")]


def test_an_upsert_compares_a_map_column_by_its_entries(spark, lake):
    schema = "user_id string, attributes map<string,string>"

    def upsert(rows):
        lake.upsert(spark.createDataFrame(rows, schema), "user_profiles", ["user_id"])

    upsert([("u1", {"a": "1", "b": "2"}), ("u2", None), ("u3", {})])
    before = lake.version("user_profiles")
    upsert([("u1", {"b": "2", "a": "1"}), ("u2", None), ("u3", {})])  # same pairs
    assert lake.version("user_profiles") == before  # nothing changed: no commit
    upsert([("u1", {"a": "1", "b": "3"}), ("u2", None), ("u3", {})])
    changed = _merge_metrics(spark, lake, "user_profiles")
    assert changed["numSourceRows"] == 1 and changed["numTargetRowsUpdated"] == 1
    got = {r["user_id"]: r["attributes"] for r in lake.read("user_profiles").collect()}
    assert got == {"u1": {"a": "1", "b": "3"}, "u2": None, "u3": {}}


def test_an_upsert_with_a_new_column_updates_every_match(spark, lake):
    lake.upsert(
        spark.createDataFrame([("u1", 10)], "user_id string, register_days int"),
        "user_profiles",
        ["user_id"],
    )
    wider = spark.createDataFrame([("u1", 10, 3)], "user_id string, register_days int, fans int")
    lake.upsert(wider, "user_profiles", ["user_id"])
    assert [tuple(r) for r in lake.read("user_profiles").collect()] == [("u1", 10, 3)]
