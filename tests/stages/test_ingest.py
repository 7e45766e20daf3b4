"""Ingest: every good row lands once, every bad row is quarantined with its reason."""

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from duia_spark.cli import main

HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,"
    "is_forward,is_hate,long_view,play_time_ms,duration_ms,tab"
)
DAY = dt.date(2026, 1, 5)
T0 = 1767571200000  # 2026-01-05T00:00:00Z in ms


def row(user="u1", item="v1", ts=T0 + 3_600_000, click="1", play="5000", dur="10000", **kw):
    sig = {
        "like": "0",
        "follow": "0",
        "comment": "0",
        "forward": "0",
        "hate": "0",
        "long_view": "1",
    }
    sig.update(kw)
    return (
        f"{user},{item},20260105,0100,{ts},{click},{sig['like']},{sig['follow']},{sig['comment']},"
        f"{sig['forward']},{sig['hate']},{sig['long_view']},{play},{dur},1"
    )


GOOD = [
    row(),
    row(user="u2", item="v2"),
    row(user="u3", item="v1", click="0", play="200", long_view="0"),
]
BAD = {
    row(user=""): "missing_user_id",
    row(item="bad id!"): "invalid_item_id",
    "u9,v9,20260105,0100": "malformed_line",
    row(user="u4", ts="yesterday"): "invalid_timestamp",
    row(user="u5", ts=T0 - 3_600_000): "timestamp_outside_drop_date",
    row(user="u6", click="7"): "invalid_signal:click",
    row(user="u7", play="-40"): "negative_time:play_time_ms",
    row(user="u8", play="999999999", dur="1000"): "absurd_time",
    # Too large for a long: quarantined, not a failed ingest.
    row(user="u10", ts="99999999999999999999"): "invalid_timestamp",
    row(user="u11", play="99999999999999999999"): "invalid_number:play_time_ms",
}


def write_drop(root: Path, lines: list[str], header: str = HEADER) -> Path:
    d = root / "log" / DAY.isoformat() / "csv"
    d.mkdir(parents=True, exist_ok=True)
    (d / "part-0.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    return root


def ingest(cfg, path, *extra):
    return main(["ingest", "--path", str(path), "--lakehouse", cfg.lakehouse_root, *extra])


def test_good_rows_land_once_and_each_bad_row_is_quarantined_with_its_reason(
    cfg, lake, tmp_path, capsys
):
    drop = write_drop(tmp_path / "raw", GOOD + [GOOD[0]] + list(BAD))  # one exact duplicate
    assert ingest(cfg, drop) == 0
    events = lake.read("events").collect()
    assert sorted((r.user_id, r.item_id) for r in events) == [
        ("u1", "v1"),
        ("u2", "v2"),
        ("u3", "v1"),
    ]
    assert {r.event_date for r in events} == {DAY}
    assert all(r.event_ts == dt.datetime.fromtimestamp((T0 + 3_600_000) / 1000) for r in events)
    rejected = {r.raw_row: r for r in lake.read("events_rejected").collect()}
    assert set(rejected) == set(BAD)
    for raw, reason in BAD.items():
        assert reason in rejected[raw].reason, (raw, rejected[raw].reason)
        assert rejected[raw].source_file.endswith("part-0.csv")
    out = capsys.readouterr().out
    assert "landed                 3" in out and "duplicates             1" in out
    assert "rejected              10" in out


def test_reingesting_a_date_gives_identical_tables(cfg, lake, tmp_path):
    drop = write_drop(tmp_path / "raw", GOOD + list(BAD))
    assert ingest(cfg, drop) == 0
    first = (lake.read("events").count(), lake.read("events_rejected").count())
    assert ingest(cfg, drop) == 0
    assert (
        (lake.read("events").count(), lake.read("events_rejected").count())
        == first
        == (3, len(BAD))
    )


def test_reingesting_a_fixed_drop_clears_its_rejected_rows(cfg, lake, tmp_path):
    raw = tmp_path / "raw"
    assert ingest(cfg, write_drop(raw, GOOD + list(BAD))) == 0
    assert lake.read("events_rejected").count() == len(BAD)
    assert ingest(cfg, write_drop(raw, GOOD)) == 0
    assert lake.read("events_rejected").count() == 0
    assert lake.read("events").count() == len(GOOD)


def test_a_day_reingested_with_only_bad_rows_keeps_its_events(cfg, lake, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert ingest(cfg, write_drop(raw, GOOD)) == 0
    assert ingest(cfg, write_drop(raw, list(BAD))) == 0
    assert lake.read("events").count() == len(GOOD)
    assert lake.read("events_rejected").count() == len(BAD)
    out = capsys.readouterr().out.splitlines()[-20:]
    assert any(line.split()[1:3] == ["landed", "0"] for line in out), out
    assert any(line.split()[1:3] == ["rejected", str(len(BAD))] for line in out), out


def test_numbers_written_as_whole_decimals_land_and_fractions_are_quarantined(cfg, lake, tmp_path):
    lines = [
        row(user="u1", play="5000.0", dur="10000.00"),
        row(user="u2", play="+5000"),
        row(user="u3", play="50.5"),
        row(user="u4", ts=f"{T0 + 3_600_000}.0"),
    ]
    assert ingest(cfg, write_drop(tmp_path / "raw", lines)) == 0
    landed = {r.user_id: (r.play_time_ms, r.duration_ms) for r in lake.read("events").collect()}
    assert landed == {"u1": (5000, 10000), "u4": (5000, 10000)}
    reasons = {r.raw_row.split(",")[0]: r.reason for r in lake.read("events_rejected").collect()}
    assert reasons == {
        "u2": "invalid_number:play_time_ms",
        "u3": "invalid_number:play_time_ms",
    }


def test_a_clean_first_drop_creates_an_empty_quarantine(cfg, lake, tmp_path):
    assert ingest(cfg, write_drop(tmp_path / "raw", GOOD)) == 0
    assert lake.exists("events_rejected") and lake.read("events_rejected").count() == 0


def test_a_first_drop_without_rows_leaves_the_lakehouse_without_tables(cfg, lake, tmp_path, capsys):
    assert ingest(cfg, write_drop(tmp_path / "raw", [])) == 0
    assert "no rows to ingest" in capsys.readouterr().out
    assert not lake.exists("events") and not lake.exists("events_rejected")


def test_a_missing_source_path_fails_with_a_message_naming_it(cfg, tmp_path, capsys):
    assert ingest(cfg, tmp_path / "nowhere") == 1
    assert "nowhere" in capsys.readouterr().err


def test_a_file_with_a_wrong_header_fails_naming_the_file(cfg, tmp_path, capsys):
    drop = write_drop(tmp_path / "raw", GOOD, header="uid,item,when")
    assert ingest(cfg, drop) == 1
    err = capsys.readouterr().err
    assert "part-0.csv" in err and "user_id" in err


def test_a_date_without_a_drop_is_refused_or_skipped_by_config(cfg, tmp_path, capsys):
    drop = write_drop(tmp_path / "raw", GOOD)
    assert ingest(cfg, drop, "--date", "2026-02-01") == 1
    assert "no drop" in capsys.readouterr().err
    assert ingest(cfg, drop, "--date", "2026-02-01", "--set", "ingest.on_missing_drop=skip") == 0
    assert "skipping" in capsys.readouterr().out


def test_profiles_are_upserted_beside_the_events(cfg, lake, tmp_path):
    drop = write_drop(tmp_path / "raw", GOOD)
    (drop / "users").mkdir()
    (drop / "users" / "users.csv").write_text(
        "user_id,gender,age_range,register_days,follow_user_num\nu1,F,18-23,10,3\n"
    )
    assert ingest(cfg, drop) == 0
    (drop / "users" / "users.csv").write_text(
        "user_id,gender,age_range,register_days,follow_user_num\nu1,F,18-23,11,4\nu2,M,24-30,5,0\n"
    )
    assert ingest(cfg, drop) == 0
    rows = sorted((r.user_id, r.register_days) for r in lake.read("user_profiles").collect())
    assert rows == [("u1", 11), ("u2", 5)]


@pytest.mark.parametrize("sep", ["\t", ","])
def test_kuairand_subsets_with_missing_columns_land_with_null_signals_and_days_from_time(
    cfg, lake, tmp_path, sep
):
    cols = ["user_id", "video_id", "date", "time_ms", "is_click", "long_view"]
    lines = [
        sep.join(cols),
        sep.join(["7", "100", "20260105", str(T0 + 1000), "1", "0"]),
        sep.join(["8", "101", "20260105", str(T0 + 2000), "0", "0"]),
        # KuaiRand's `date` is Beijing time, rounded: the day comes from time_ms
        sep.join(["9", "102", "20260106", str(T0 + 3000), "1", "1"]),
    ]
    f = tmp_path / "kuairand" / "log_standard_subset.csv"
    f.parent.mkdir()
    f.write_text("\n".join(lines) + "\n")
    assert ingest(cfg, f.parent, "--source", "kuairand") == 0
    rows = sorted(lake.read("events").collect(), key=lambda r: r.user_id)
    assert [(r.user_id, r.item_id, r.click, r.event_date) for r in rows] == [
        ("7", "100", 1, DAY),
        ("8", "101", 0, DAY),
        ("9", "102", 1, DAY),
    ]
    assert all(r.like is None and r.play_time_ms is None for r in rows)
    assert lake.read("events_rejected").count() == 0


def recbole_export(tmp_path: Path, name: str, **files: str) -> Path:
    """A folder `name` holding `name.<ext>` for every ext=text given (inter, user, item)."""
    d = tmp_path / name
    d.mkdir()
    for ext, text in files.items():
        (d / f"{name}.{ext}").write_text(text)
    return d


def test_movielens_ratings_become_exposures_and_high_ratings_likes(cfg, lake, tmp_path):
    d = recbole_export(
        tmp_path,
        "ml-100k",
        inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t5\t891717742\n22\t377\tx\t878887116\n",
        user="user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "196\t49\tM\twriter\t55105\n",
        item="item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy Drama\n",
    )
    assert ingest(cfg, d, "--source", "movielens") == 0
    rows = {r.user_id: r for r in lake.read("events").collect()}
    assert set(rows) == {"196", "186"}
    assert (rows["196"].click, rows["196"].like, rows["196"].long_view) == (1, 0, 0)
    assert (rows["186"].click, rows["186"].like, rows["186"].long_view) == (1, 1, 1)
    assert rows["186"].event_ts == dt.datetime.fromtimestamp(
        891717742
    )  # collect() gives local time
    assert "invalid_signal:like" in lake.read("events_rejected").first().reason
    assert lake.read("item_features").first().category == "Comedy"


def test_movielens_1m_layout_reads_title_ids_genres_and_age_codes(cfg, lake, tmp_path):
    d = recbole_export(
        tmp_path,
        "ml-1m",
        inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1m_1\tToy Story (1995)\t5\t978300760\n1m_2\tJumanji (1995)\t2\t978302109\n"
        "1m_3\t \t4\t978302109\n",
        user="user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
        "1m_1\t1\tF\t10\t48067\n1m_2\t25\tM\t16\t70072\n",
        item="item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
        "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\n",
    )
    assert ingest(cfg, d, "--source", "movielens") == 0
    rows = {r.user_id: r for r in lake.read("events").collect()}
    toy_story = "m" + hashlib.sha256(b"Toy Story (1995)").hexdigest()[:16]
    assert rows["1m_1"].item_id == toy_story and rows["1m_1"].like == 1
    assert rows["1m_2"].like == 0
    assert "1m_3" not in rows  # a blank title is no id: quarantined, not hashed
    assert lake.read("events_rejected").first().reason == "missing_item_id"
    assert lake.read("item_features").first()[:2] == (toy_story, "Animation")
    ages = {r.user_id: r.age_range for r in lake.read("user_profiles").collect()}
    assert ages == {"1m_1": None, "1m_2": "25-34"}  # code 1 = "under 18": no range


def test_movielens_folder_without_one_inter_file_is_an_error(cfg, tmp_path, capsys):
    d = tmp_path / "ml"
    d.mkdir()
    assert ingest(cfg, d, "--source", "movielens") == 1
    assert "expected one MovieLens file ml-*.inter, found none" in capsys.readouterr().err


def test_movielens_unrated_exposures_are_same_day_items_the_user_never_rated(cfg, lake, tmp_path):
    day1, day2 = 881250949, 881250949 + 86_400
    ratings = [  # user, item, rating, time: u1 rated i1 and i2, never i3 or i4
        ("u1", "i1", 5, day1), ("u2", "i3", 4, day1), ("u3", "i1", 2, day1),
        ("u1", "i2", 3, day2), ("u2", "i4", 5, day2), ("u3", "i4", 1, day2),
    ]  # fmt: skip
    d = recbole_export(
        tmp_path,
        "ml-100k",
        inter="user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings),
    )
    draw = ("--source", "movielens", "--set", "ingest.movielens_unrated_per_rating=1")
    assert ingest(cfg, d, *draw) == 0
    rows = lake.read("events").collect()
    rated = {(u, i) for u, i, _, _ in ratings}
    unrated = [r for r in rows if r.click == 0]
    assert sum(r.click == 1 for r in rows) == len(ratings)
    assert unrated, "no unrated exposure was drawn"
    by_day = {}
    for _, i, _, t in ratings:
        by_day.setdefault(dt.datetime.fromtimestamp(t, dt.UTC).date(), set()).add(i)
    for r in unrated:
        assert (r.user_id, r.item_id) not in rated  # never an item the user rated
        assert r.item_id in by_day[r.event_date]  # an item consumed that same day
        assert r.like is None and r.long_view is None  # preference unknown, not 0
    assert len({(r.user_id, r.item_id, r.event_ts) for r in rows}) == len(rows)
    # A re-run draws exactly the same rows (seeded) and duplicates nothing.
    assert ingest(cfg, d, *draw) == 0
    key = sorted((r.user_id, r.item_id, r.event_ts, r.click) for r in rows)
    assert (
        sorted((r.user_id, r.item_id, r.event_ts, r.click) for r in lake.read("events").collect())
        == key
    )


def test_a_line_without_quotes_splits_as_the_quote_aware_regex_splits_it(spark):
    from pyspark.sql import functions as F

    from duia_spark.sources.delimited import _split_outside_quotes, split_fields

    lines = {
        ",": ["u1,v1,,5", ",,", "a,b,", " a , b ", 'u1,"v,1",5', '"a","b"', 'a,"b'],
        "\t": ["u1\tv1\t\t5", "\t", 'u1\t"v\t1"\t5', "a,b\tc"],
    }
    for sep, texts in lines.items():
        df = spark.createDataFrame([(t,) for t in texts], "line string")
        regex = _split_outside_quotes("\\t" if sep == "\t" else sep)
        got = df.select(
            "line",
            split_fields(F.col("line"), sep).alias("fields"),
            F.split("line", regex).alias("quote_aware"),
        ).collect()
        for r in got:
            assert r.fields == r.quote_aware, (sep, r.line)
    fields = spark.range(1).select(split_fields(F.lit('u1,"v,1",5'), ",").alias("f")).first().f
    assert fields == ["u1", '"v,1"', "5"]  # a separator inside quotes does not split


def test_a_row_with_several_faults_keeps_every_reason_and_counts_under_the_first(
    cfg, lake, tmp_path, capsys
):
    bad = row(user="u7", click="7", play="-40")
    assert ingest(cfg, write_drop(tmp_path / "raw", [row(), bad])) == 0
    (rejected,) = lake.read("events_rejected").collect()
    assert rejected.raw_row == bad
    assert rejected.reason == "invalid_signal:click; negative_time:play_time_ms"
    out = capsys.readouterr().out
    assert "rejected               1" in out
    assert [line.split() for line in out.splitlines() if "invalid_signal " in line] == [
        ["[ingest]", "invalid_signal", "1"]
    ]
    assert "negative_time" not in out


def test_a_quoted_line_lands_the_same_event_as_its_unquoted_copy(cfg, lake, tmp_path):
    plain = row(user="u1", item="v1")
    quoted = ",".join(f'"{f}"' for f in row(user="u2", item="v1").split(","))
    padded = ",".join(f' "{f}" ' for f in row(user="u3", item="v1").split(","))
    assert ingest(cfg, write_drop(tmp_path / "raw", [plain, quoted, padded])) == 0
    events = {r.user_id: r.asDict() for r in lake.read("events").collect()}
    assert set(events) == {"u1", "u2", "u3"}
    for u in ("u2", "u3"):
        assert {**events[u], "user_id": "u1"} == events["u1"]
    assert lake.read("events_rejected").count() == 0


def test_a_bad_parquet_row_is_quarantined_with_its_raw_row_as_json(cfg, lake, tmp_path, capsys):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "raw" / "log" / DAY.isoformat() / "parquet"
    d.mkdir(parents=True)
    table = pa.table(
        {
            "user_id": ["u1", "u2", None],
            "video_id": ["v1", "v1", "v2"],
            "time_ms": [T0 + 3_600_000, T0 + 7_200_000, T0 + 3_600_000],
            "is_click": [1, 7, 1],
            "play_time_ms": [5000, 5000, None],
            "duration_ms": [10000, 10000, 10000],
        }
    )
    pq.write_table(table, d / "part-0.parquet")
    assert ingest(cfg, tmp_path / "raw") == 0
    assert [r.user_id for r in lake.read("events").collect()] == ["u1"]
    rejected = {r.reason: r for r in lake.read("events_rejected").collect()}
    assert set(rejected) == {"invalid_signal:click", "missing_user_id"}
    # The raw row is the Parquet row as JSON, typed values as in the file (nulls left out).
    assert json.loads(rejected["invalid_signal:click"].raw_row) == {
        "user_id": "u2",
        "video_id": "v1",
        "time_ms": T0 + 7_200_000,
        "is_click": 7,
        "play_time_ms": 5000,
        "duration_ms": 10000,
    }
    assert json.loads(rejected["missing_user_id"].raw_row) == {
        "video_id": "v2",
        "time_ms": T0 + 3_600_000,
        "is_click": 1,
        "duration_ms": 10000,
    }
    assert all(r.source_file.endswith("part-0.parquet") for r in rejected.values())
    out = capsys.readouterr().out
    assert "landed                 1" in out and "rejected               2" in out
