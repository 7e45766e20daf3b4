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
