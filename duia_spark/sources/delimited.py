"""Delimited text files (CSV / TSV, quoted fields, gzip) read into the canonical raw frame;
the probe that names a corrupt file before the one big read."""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from duia_spark.sources.raw import BOM, CANONICAL_RAW, RawInputError


def _split_outside_quotes(sep: str) -> str:
    """Regex that splits on `sep` only where it is not inside double quotes."""
    return f'{sep}(?=(?:[^"]*"[^"]*")*[^"]*$)'


def split_fields(line: Column, sep: str) -> Column:
    """The fields of a delimited line, splitting on `sep` only outside double quotes.

    The quote-aware regex looks ahead to the end of the line at every separator (time
    quadratic in the line's length); a line without a `"` splits the same on every
    separator, so it takes a plain split.
    """
    sep = "\\t" if sep == "\t" else sep
    return F.when(line.contains('"'), F.split(line, _split_outside_quotes(sep))).otherwise(
        F.split(line, sep)
    )


def unquote(c: Column) -> Column:
    c = F.trim(c)
    # Only a field that starts with a quote can be quoted: the rest skip the regex.
    c = F.when(c.startswith('"'), F.regexp_replace(c, r'^"(.*)"$', "$1")).otherwise(c)
    return F.when(c == "", None).otherwise(c)


def read_header(spark: SparkSession, file: str) -> str:
    """First line of a text file (local or any Hadoop filesystem; `.gz` is decompressed),
    without the UTF-8 byte-order mark spreadsheet tools write in front of it."""
    if "://" not in file or file.startswith("file:"):
        local = file.removeprefix("file:")
        opener = gzip.open if local.endswith(".gz") else open
        with opener(local, "rt", encoding="utf-8", errors="replace") as fh:
            line = fh.readline().rstrip("\r\n")
    else:
        row = spark.read.text(file).limit(1).first()
        line = row[0] if row else ""
    return line.removeprefix(BOM)


def read_delimited_file(
    spark: SparkSession,
    file: str,
    sep: str,
    rename: dict[str, str],
    required: Sequence[str],
    drop_date: dt.date | None,
    header_type_suffix: bool = False,
) -> DataFrame:
    """Read one delimited text file into the canonical raw frame.

    Lines are read as text and split here (not by Spark's CSV reader) because the CSV
    reader silently pads or truncates rows with the wrong number of fields; we want
    those rows quarantined as malformed, with their raw text.
    """
    header_line = read_header(spark, file)
    names = [h.strip().strip('"') for h in header_line.split(sep)]
    if header_type_suffix:  # RecBole's typed headers: `user_id:token`
        names = [n.split(":", 1)[0] for n in names]
    missing = [c for c in required if c not in names]
    if not header_line or missing:
        raise RawInputError(
            f"{file}: header {header_line!r} lacks required column(s) {', '.join(missing) or '(empty file)'}"
        )
    # Spark splits lines on \n, \r\n and \r alike; only the first line can carry a BOM.
    lines = spark.read.text(file).select(F.regexp_replace("value", f"^{BOM}", "").alias("raw_row"))
    lines = lines.where(F.col("raw_row") != F.lit(header_line)).where(F.trim("raw_row") != "")
    df = lines.withColumn("_parts", split_fields(F.col("raw_row"), sep))
    selected = {}
    for i, name in enumerate(names):
        if name in rename:
            selected[rename[name]] = unquote(F.get(F.col("_parts"), i))
    out = df.select(
        *[selected.get(c, F.lit(None).cast("string")).alias(c) for c in CANONICAL_RAW],
        F.col("raw_row"),
        F.lit(file).alias("source_file"),
        (F.size("_parts") != len(names)).alias("malformed"),
        F.lit(drop_date).cast("date").alias("drop_date"),
    )
    return out


def union_all(frames: Iterable[DataFrame]) -> DataFrame:
    frames = list(frames)
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith(("_", "."))
    )


def probe_raw_file(file: str) -> str | None:
    """Why a local raw file cannot be read, or None when it can.

    Run on every file of a drop before the one big read, so that a bad file is named
    instead of failing the whole union with a Java stack trace. Cheap: a Parquet file's
    footer (schema and row-group index, at the end of the file: what truncation loses) is
    parsed; a gzip'd file is decompressed through to its end-of-stream check (length and
    CRC), without keeping the text. Plain text needs no probe: its bad lines are
    quarantined row by row.
    """
    kind = "Parquet" if file.endswith(".parquet") else "gzip"
    try:
        if file.endswith(".parquet"):
            pq.read_metadata(file)
        elif file.endswith(".gz"):
            with gzip.open(file, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    except (OSError, EOFError, ValueError, zlib.error) as e:  # ArrowInvalid is a ValueError
        return f"corrupt or truncated {kind} file ({' '.join(str(e).split())})"
    return None


def empty_raw_frame(spark: SparkSession) -> DataFrame:
    """The canonical raw frame with no rows: every file of the drops was set aside."""
    strings = [*CANONICAL_RAW, "raw_row", "source_file"]
    fields = [T.StructField(c, T.StringType()) for c in strings]
    fields += [
        T.StructField("malformed", T.BooleanType()),
        T.StructField("drop_date", T.DateType()),
    ]
    return spark.createDataFrame([], T.StructType(fields))
