"""Ingest of files as spreadsheet tools and broken transfers leave them: a byte-order
mark and CRLF line ends are read as text; a truncated Parquet or gzip file is named in
one line, or set aside in bronze.files_rejected while the rest of the drop lands."""

import datetime as dt
import gzip
import io
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from duia_spark.cli import failure_line, main

HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,"
    "is_forward,is_hate,long_view,play_time_ms,duration_ms,tab"
)
DAY = dt.date(2026, 1, 5)
T0 = 1767571200000  # 2026-01-05T00:00:00Z in ms


def rows(users: list[str]) -> list[str]:
    return [f"{u},v1,20260105,0100,{T0 + 3_600_000},1,0,0,0,0,0,1,5000,10000,1" for u in users]


def csv_text(users: list[str]) -> str:
    return HEADER + "\n" + "\n".join(rows(users)) + "\n"


def drop_dir(root: Path, fmt: str) -> Path:
    d = root / "log" / DAY.isoformat() / ("parquet" if fmt == "parquet" else "csv")
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_file(folder: Path, name: str, fmt: str, users: list[str]) -> Path:
    """One drop file of `users` (one exposure each) as Parquet or gzip'd CSV."""
    if fmt == "parquet":
        path = folder / f"{name}.parquet"
        pq.write_table(pa_csv.read_csv(io.BytesIO(csv_text(users).encode())), path)
    else:
        path = folder / f"{name}.csv.gz"
        path.write_bytes(gzip.compress(csv_text(users).encode()))
    return path


def truncate(path: Path) -> int:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return len(data) // 2


def bad_drop(root: Path, fmt: str) -> tuple[Path, Path, int]:
    """A drop of two files of the format: a good one (u1..u3) and a cut-short one."""
    folder = drop_dir(root, fmt)
    write_file(folder, "part-0", fmt, ["u1", "u2", "u3"])
    bad = write_file(folder, "part-1", fmt, [f"w{i}" for i in range(200)])
    return root, bad, truncate(bad)


def ingest(cfg, path, *extra):
    return main(["ingest", "--path", str(path), "--lakehouse", cfg.lakehouse_root, *extra])


def test_a_csv_with_a_byte_order_mark_and_crlf_line_ends_lands_every_row(cfg, lake, tmp_path):
    raw = tmp_path / "raw"
    text = "\ufeff" + "\r\n".join([HEADER, *rows(["u1", "u2", "u3"])]) + "\r\n"
    (drop_dir(raw, "csv") / "part-0.csv").write_bytes(text.encode("utf-8"))
    assert ingest(cfg, raw) == 0
    events = lake.read("events").collect()
    assert sorted(r.user_id for r in events) == ["u1", "u2", "u3"]  # the first row intact
    assert {(r.play_time_ms, r.duration_ms) for r in events} == {(5000, 10000)}
    assert lake.read("events_rejected").count() == 0  # the header was not read as a row


@pytest.mark.parametrize("fmt", ["parquet", "csv.gz"])
def test_a_truncated_file_fails_the_ingest_in_one_line_naming_it(cfg, lake, tmp_path, capsys, fmt):
    raw, bad, _ = bad_drop(tmp_path / "raw", fmt)
    assert ingest(cfg, raw) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(bad) in err[0] and "truncated" in err[0] and "on_corrupt_file" in err[0]
    assert not lake.exists("events")


@pytest.mark.parametrize("fmt", ["parquet", "csv.gz"])
def test_a_truncated_file_is_set_aside_and_the_rest_of_the_drop_lands_under_quarantine(
    cfg, lake, tmp_path, capsys, fmt
):
    raw, bad, size = bad_drop(tmp_path / "raw", fmt)
    assert ingest(cfg, raw, "--set", "ingest.on_corrupt_file=quarantine") == 0
    assert sorted(r.user_id for r in lake.read("events").collect()) == ["u1", "u2", "u3"]
    (row,) = lake.read("files_rejected").collect()
    assert (row.path, row.size_bytes, row.drop_date, row.source) == (
        str(bad),
        size,
        DAY,
        "synthetic",
    )
    assert "truncated" in row.reason and row.ingest_ts is not None
    out = capsys.readouterr().out
    assert "files set aside        1" in out and str(bad) in out


def test_reingesting_after_the_file_is_fixed_clears_its_rejection(cfg, lake, tmp_path):
    raw, bad, _ = bad_drop(tmp_path / "raw", "parquet")
    assert ingest(cfg, raw, "--set", "ingest.on_corrupt_file=quarantine") == 0
    assert lake.read("files_rejected").count() == 1
    write_file(bad.parent, "part-1", "parquet", ["w1"])
    assert ingest(cfg, raw, "--set", "ingest.on_corrupt_file=quarantine") == 0
    assert lake.read("files_rejected").count() == 0
    assert lake.read("events").count() == 4


def test_an_unknown_on_corrupt_file_value_is_a_configuration_error(cfg, tmp_path, capsys):
    assert ingest(cfg, tmp_path, "--set", "ingest.on_corrupt_file=ignore") == 2
    assert "ingest.on_corrupt_file" in capsys.readouterr().err


def test_a_jvm_failure_reads_as_one_line_without_the_java_stack_trace(spark, tmp_path):
    raw, bad, _ = bad_drop(tmp_path / "raw", "csv.gz")
    with pytest.raises(Exception) as caught:
        spark.read.text(str(bad)).count()
    line = failure_line(caught.value)
    assert "\n" not in line and bad.name in line and "\tat " not in str(line)
