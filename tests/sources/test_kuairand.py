"""KuaiRand-Pure: the log reads the same from CSV and Parquet, only official columns are
read, profile and video columns reach the samples as declared side features, and the
declared lists decide the model's inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pytest

from duia_spark.cli import main

DAY1, DAY2 = dt.date(2022, 5, 1), dt.date(2022, 5, 2)
# 2022-05-01 00:00 in Beijing (UTC+8) is 2022-04-30T16:00Z.
T1 = 1651334400000
T2 = T1 + 86_400_000
OFFICIAL = [
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
]  # fmt: skip
USERS = """user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,register_days,register_days_range,onehot_feat0,onehot_feat1
1,full_active,0,1,1,514,500+,150,"[100,1k)",34,"[30,60)",799,730+,1,3
2,2_14_day_new,0,-124,0,3,"(0,10]",0,"[0,1)",0,"[0,1)",9,"(7,14]",0,1
"""
VIDEOS = """video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,music_id,music_type,tag
10,7349781,NORMAL,2022-04-21,LongImport,0.0,87433.0,720.0,1280.0,9155697141,9.0,39
11,2103883,AD,2022-04-30,Kmovie,0.0,218066.0,720.0,1280.0,6355810746,9.0,"2,28"
"""


def log_rows() -> pd.DataFrame:
    def r(user, video, t, click, long_view, like=0, tab=1):
        date = (dt.datetime.fromtimestamp(t / 1000, dt.UTC) + dt.timedelta(hours=8)).date()
        return [user, video, int(date.strftime("%Y%m%d")), 1200, t, click, like, 0, 0, 0, 0,
                long_view, 5000 * click, 20000, 0, 0, 0, 0, tab]  # fmt: skip

    rows = [
        r(1, 10, T1 + 1000, 1, 1, like=1),
        r(1, 11, T1 + 2000, 0, 0, tab=4),
        r(2, 10, T1 + 3000, 1, 0),
        r(2, 10, T1 + 3000, 1, 0),  # the source repeats (user, video, time_ms)
        r(1, 11, T2 + 1000, 1, 1),
        r(2, 11, T2 + 2000, 0, 0),
        r(3, 10, T2 + 3000, 1, 1),  # no profile row
        # 23:59:59 Beijing on May 1 whose rounded `date` says May 2: day comes from time_ms
        r(3, 11, T2 - 1000, 1, 0),
    ]
    df = pd.DataFrame(rows, columns=OFFICIAL)
    df.loc[len(df)] = [5, 10, 20220502, 1200, "yesterday", 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    # derived columns of a third party's export: never read
    df["watch_ratio"] = 0.5
    df["like"] = 1
    return df


def write_folder(folder: Path, form: str) -> Path:
    folder.mkdir(parents=True)
    df = log_rows()
    if form == "csv":
        df.to_csv(folder / "log_standard_4_22_to_5_08_pure.csv", index=False)
    else:
        df["time_ms"] = df["time_ms"].astype(str)  # a string column in Parquet, like a CSV
        df.to_parquet(folder / "test.parquet", index=False)
    (folder / "user_features_pure.csv").write_text(USERS)
    (folder / "video_features_basic_pure.csv").write_text(VIDEOS)
    return folder


def kuairand_cfg(cfg):
    from duia_spark.config import load_config

    conf = load_config(Path(__file__).resolve().parents[2] / "conf" / "kuairand.yaml")
    return dataclasses.replace(
        conf,
        lakehouse=cfg.lakehouse,
        spark=cfg.spark,
        ingest=dataclasses.replace(conf.ingest, source_timezone="Asia/Shanghai"),
    )


def ingest(cfg, path):
    from duia_spark.cli import build_parser
    from duia_spark.stages import load_stage

    args = build_parser().parse_args(["ingest", "--source", "kuairand", "--path", str(path)])
    return load_stage("ingest").run(cfg, args)


def landed(lake) -> list[tuple]:
    cols = ["user_id", "item_id", "event_ts", "event_date", "click", "like", "long_view", "tab"]
    return sorted(tuple(r) for r in lake.read("events").select(*cols).collect())


@pytest.mark.slow
def test_csv_and_parquet_logs_land_the_same_rows_and_ignore_unofficial_columns(
    spark, cfg, tmp_path, capsys
):
    from duia_spark.lakehouse import Lakehouse

    out = {}
    for form in ("csv", "parquet"):
        root = str(tmp_path / f"lake_{form}")
        c = kuairand_cfg(
            dataclasses.replace(cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=root))
        )
        assert ingest(c, write_folder(tmp_path / form, form)) == 0
        assert "ignoring non-official log column(s): watch_ratio, like" in capsys.readouterr().out
        lake = Lakehouse(spark, c)
        rejected = [r.reason for r in lake.read("events_rejected").collect()]
        out[form] = (landed(lake), rejected)
    assert out["csv"] == out["parquet"]
    rows, rejected = out["csv"]
    assert rejected == ["invalid_timestamp"]
    assert len(rows) == 7  # 8 good rows, one repeated
    # the derived `like` column (1 everywhere) is not read: the official is_like is
    assert sum(r[5] for r in rows) == 1
    by_user_time = {(r[0], r[1]): r for r in rows}
    assert by_user_time[("3", "11")][3] == DAY1  # its rounded `date` said May 2
    assert by_user_time[("1", "11")][7] in ("4", "1")


@pytest.mark.slow
def test_profile_video_and_context_columns_reach_the_samples_as_declared(spark, cfg, tmp_path):
    from pyspark.sql import functions as F

    from duia_spark.data.samples import hash_bucket, item_dense_features, user_dense_features
    from duia_spark.lakehouse import Lakehouse

    c = kuairand_cfg(cfg)
    assert ingest(c, write_folder(tmp_path / "kr", "parquet")) == 0
    argv = [
        "--lakehouse",
        c.lakehouse_root,
        "--conf",
        str(Path(__file__).resolve().parents[2] / "conf" / "kuairand.yaml"),
    ]
    assert main(["backfill", "--date", str(DAY1), "--end-date", str(DAY2), *argv]) == 0
    lake = Lakehouse(spark, c)
    samples = {
        (r.user_id, r.item_id): r
        for r in lake.read("samples").where(F.col("sample_date") == DAY2).collect()
    }
    side = [(k, col) for k, col in [("user", x) for x in c.features.user_categorical]
            + [("item", x) for x in c.features.item_categorical]
            + [("context", x) for x in c.features.context_categorical]]  # fmt: skip

    def bucket(kind, col, value):
        n = {**{("user", k): v for k, v in c.features.user_categorical.items()},
             **{("item", k): v for k, v in c.features.item_categorical.items()},
             **{("context", k): v for k, v in c.features.context_categorical.items()}}[(kind, col)]  # fmt: skip
        return spark.range(1).select(hash_bucket(F.lit(value), f"{kind}.{col}", n)).first()[0]

    known = samples[("1", "11")]
    assert len(known.side_cat) == len(side)
    got = dict(zip(side, known.side_cat, strict=True))
    assert got[("user", "user_active_degree")] == bucket(
        "user", "user_active_degree", "full_active"
    )
    assert got[("user", "onehot_feat1")] == bucket("user", "onehot_feat1", "3")
    assert got[("item", "video_type")] == bucket("item", "video_type", "AD")
    assert got[("context", "tab")] == bucket("context", "tab", "1")
    assert got[("user", "onehot_feat2")] == 0  # not in this user table: missing
    new = dict(zip(side, samples[("2", "11")].side_cat, strict=True))
    assert new[("user", "user_active_degree")] == bucket(
        "user", "user_active_degree", "2_14_day_new"
    )
    assert all(
        v == 0
        for (kind, _), v in zip(side, samples[("3", "10")].side_cat, strict=True)
        if kind == "user"
    )

    user_dense = dict(zip(user_dense_features(c.features), known.user_dense, strict=True))
    assert user_dense["slog1p_fans_user_num"] == pytest.approx(math.log1p(150), rel=1e-5)
    assert user_dense["log1p_register_days"] == pytest.approx(math.log1p(799), rel=1e-5)
    item_dense = dict(
        zip(item_dense_features(c.item_stats, c.features), known.item_dense, strict=True)
    )
    assert item_dense["log1p_days_since_upload"] == pytest.approx(
        math.log1p(2), rel=1e-5
    )  # 04-30 → 05-02
    assert item_dense["log1p_duration_ms"] == pytest.approx(math.log1p(218066), rel=1e-5)


def test_the_declared_feature_lists_decide_the_models_inputs():
    import torch

    from duia_spark.contract import input_columns
    from duia_spark.model.config import ModelConfig
    from duia_spark.model.ranker import DuiaRanker

    small = dict(n_users=10, n_items=20, n_categories=5, n_authors=5, k1=8, k2=2, memory_dim=8,
                 item_k1=4, item_k2=2, seq_len=4, pos_seq_len=3, embedding_dim=8,
                 recent_queries=16, n_user_dense=2, n_item_dense=2)  # fmt: skip
    plain = ModelConfig(**small)
    assert "side_cat" not in input_columns(plain)
    cfg = ModelConfig(
        **small, user_cat_buckets=[4, 3], item_cat_buckets=[5], context_cat_buckets=[2]
    )
    assert "side_cat" in input_columns(cfg)
    model = DuiaRanker(cfg).eval()
    assert model.side_emb.num_embeddings == 14
    b = 6
    batch = {
        "user_idx": torch.arange(1, b + 1), "item_idx": torch.arange(1, b + 1),
        "category_idx": torch.ones(b, dtype=torch.long), "author_idx": torch.ones(b, dtype=torch.long),
        "segment": torch.zeros(b, dtype=torch.long),
        "user_dense": torch.zeros(b, 2), "item_dense": torch.zeros(b, 2),
        "hist_items": torch.zeros(b, 4, dtype=torch.long), "hist_mask": torch.zeros(b, 4, dtype=torch.bool),
        "pos_items": torch.zeros(b, 3, dtype=torch.long), "pos_mask": torch.zeros(b, 3, dtype=torch.bool),
        "side_cat": torch.tensor([[1, 1, 1, 1]] * b),
    }  # fmt: skip
    with torch.no_grad():
        base = model.predict(batch)
        other = dict(batch, side_cat=torch.tensor([[3, 1, 1, 1]] * b))  # another profile value
        moved = model.predict(other)
    assert not torch.allclose(base, moved)
    # the query tower reads the user's side features, not the item's or the context's
    with torch.no_grad():
        q = model(batch)["aux"]["user_query"]
        q_user = model(other)["aux"]["user_query"]
        q_item = model(dict(batch, side_cat=torch.tensor([[1, 1, 4, 1]] * b)))["aux"]["user_query"]
    assert not torch.allclose(q, q_user) and torch.allclose(q, q_item)
