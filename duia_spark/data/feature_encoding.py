"""How a raw value becomes an entry of a sample's feature arrays.

Counts and numeric attributes are log-scaled, categorical attributes hashed into
buckets, profile fields (age, gender) parsed into numbers; the arrays that hold them
have a fixed width, with zeros where a value is missing. Column → Column.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def nonneg_log1p(c: Column) -> Column:
    """log1p of a count; 0 when it is missing or negative."""
    return F.log1p(F.greatest(F.coalesce(c.cast("double"), F.lit(0.0)), F.lit(0.0)))


def signed_log1p(c: Column) -> Column:
    """sign(x)·log1p(|x|) of a numeric string; 0 when missing or not a number."""
    x = F.when(F.trim(c).rlike(r"^-?[0-9]+(\.[0-9]*)?$"), F.trim(c).cast("double"))
    return F.coalesce(F.signum(x) * F.log1p(F.abs(x)), F.lit(0.0))


def hash_bucket(value: Column, column: str, buckets: int) -> Column:
    """A categorical value's bucket in [1, buckets); 0 when the value is missing. Salted
    with the column's name, so equal codes of two columns land apart."""
    v = F.trim(value.cast("string"))
    h = F.pmod(F.xxhash64(F.lit(column), v), F.lit(buckets - 1)) + 1
    return F.when(v.isNull() | (v == ""), F.lit(0)).otherwise(h).cast("int")


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


def float_array(parts: list[Column]) -> Column:
    return F.array(*[p.cast("float") for p in parts])


def int_array(parts: list[Column]) -> Column:
    return F.array(*parts) if parts else F.array().cast("array<int>")


def zeros(n: int, tp: str) -> Column:
    """An array of n zeros of type `tp`."""
    return F.array_repeat(F.lit(0).cast(tp), n)
