"""`duia train --date D`: gold.samples → Petastorm → TorchDistributor (DDP) → MLflow.

Trains on the samples of [D - train.train_days, D) and validates on D (a temporal
split; with train.validation_days N > 1 the last N days up to D validate and the
train_days before them train: training/split.py). The driver alone talks to MLflow: it
logs params, per-epoch metrics, plots, lineage, the pyfunc model with its cluster
memory, and registers the version. A run that stops before its last epoch registers
nothing; `--resume` continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.samples import item_dense_features, user_dense_features
from duia_spark.data.schema import SEGMENTS
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.training.dataset import (
    check_sample_columns,
    deterministic_layout,
    select_training_columns,
)
from duia_spark.training.loop import TrainJob, train_rank, wants_gpu
from duia_spark.training.split import temporal_split

NAME = "train"
HELP = "train PLE+DUIA on gold.samples (TorchDistributor), log and register it in MLflow"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped run from its last checkpoint"
    )
    p.add_argument("--cold-start", action="store_true", help="ignore the champion's cluster memory")
    p.add_argument(
        "--variant", help="model variant (model.variant): ple, ple+uie, ple+uie+upbe, ple+duia"
    )
    p.add_argument(
        "--no-register", action="store_true", help="log the run but do not register a version"
    )


def model_config_for_data(cfg: Config, lake: Lakehouse):
    """ModelConfig with vocabulary sizes and input widths taken from the lakehouse."""
    sizes = {
        r["kind"]: int(r["n"]) + 1
        for r in lake.read("vocabulary").groupBy("kind").agg(F.max("idx").alias("n")).collect()
    }
    return dataclasses.replace(
        cfg.model,
        n_users=max(2, sizes.get("user", 1)),
        n_items=max(2, sizes.get("item", 1)),
        n_categories=max(2, sizes.get("category", 1)),
        n_authors=max(2, sizes.get("author", 1)),
        n_user_dense=len(user_dense_features(cfg.features)),
        n_item_dense=len(item_dense_features(cfg.item_stats, cfg.features)),
        user_cat_buckets=list(cfg.features.user_categorical.values()),
        item_cat_buckets=list(cfg.features.item_categorical.values()),
        context_cat_buckets=list(cfg.features.context_categorical.values()),
        seq_len=cfg.sequences.exposures_len,
        pos_seq_len=cfg.sequences.positives_len,
    )


def _segment_counts(df) -> dict[str, int]:
    rows = df.groupBy("segment_idx").count().collect()  # <= 3 rows
    return {SEGMENTS[r["segment_idx"]]: int(r["count"]) for r in rows}


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("train needs --date D (trains on the days before D, validates on D)")
    if args.variant:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, variant=args.variant))
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    from duia_spark import tracking
    from duia_spark.training.registry import log_and_register, warm_start_paths

    spark = build_spark_session(cfg, "duia-train")
    lake = Lakehouse(spark, cfg)
    tc = cfg.train
    day = args.date
    split = temporal_split(day, tc.train_days, tc.validation_days)
    samples = lake.read("samples")
    check_sample_columns(samples.columns, cfg.model)
    model_cfg = model_config_for_data(cfg, lake)
    train_df = split.training_rows(samples)
    val_df = split.validation_rows(samples)
    train_counts, val_counts = _segment_counts(train_df), _segment_counts(val_df)
    n_train, n_val = sum(train_counts.values()), sum(val_counts.values())
    if n_train == 0:
        raise ValueError(split.no_samples_message("training"))
    if n_val == 0:
        raise ValueError(split.no_samples_message("validation"))
    print(
        f"[train] {model_cfg.variant}: {n_train:,} training rows {split.describe_training()} {train_counts}"
    )
    print(f"[train] {n_val:,} validation rows on {split.describe_validation()} {val_counts}")

    tracking.configure_mlflow(cfg)
    warm_memory, warm_weights, warm_version = (None, None, None)
    tmp = Path(tempfile.mkdtemp(prefix="duia-train-"))
    if not (tc.cold_start or args.cold_start):
        warm_memory, warm_weights, warm_version = warm_start_paths(
            cfg, tmp / "champion", tc.warm_start_weights
        )
        print(
            f"[train] warm start from version {warm_version}"
            if warm_version
            else "[train] no champion yet: cold start"
        )

    cache = Path(cfg.resolve_path(tc.petastorm_cache_dir))
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    parts = max(4, 2 * tc.num_processes)  # at least as many row groups as ranks
    train_conv = make_spark_converter(
        deterministic_layout(select_training_columns(train_df, model_cfg), parts)
    )
    val_conv = make_spark_converter(
        deterministic_layout(select_training_columns(val_df, model_cfg), 2)
    )
    # Petastorm takes its file list from a Set (`inputFiles()`), so its order changes from
    # run to run; part-NNNNN file names sorted restore the partition order.
    for conv in (train_conv, val_conv):
        conv.file_urls = sorted(conv.file_urls)
    ckpt = (
        Path(cfg.resolve_path(tc.checkpoint_dir)) / f"{day}_{model_cfg.variant.replace('+', '_')}"
    )
    if not args.resume and ckpt.exists():
        shutil.rmtree(ckpt)
    out_dir = tmp / "result"
    job = TrainJob(
        model_cfg=model_cfg,
        train_cfg=tc,
        train_data=train_conv,
        val_data=val_conv,
        train_rows=n_train,
        val_rows=n_val,
        out_dir=str(out_dir),
        checkpoint_dir=str(ckpt),
        resume=args.resume,
        warm_memory=warm_memory,
        warm_weights=warm_weights,
    )
    t0 = time.time()
    try:
        from pyspark.ml.torch.distributor import TorchDistributor

        TorchDistributor(
            num_processes=tc.num_processes, local_mode=tc.local_mode, use_gpu=wants_gpu(tc.use_gpu)
        ).run(train_rank, job)
    finally:
        train_conv.delete()
        val_conv.delete()
    if not (out_dir / "_SUCCESS").exists():
        print(
            f"[train] stopped before the last epoch; nothing registered. Continue with --resume (checkpoint {ckpt})"
        )
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    lineage = {
        "samples_version": lake.version("samples"),
        "vocabulary_version": lake.version("vocabulary"),
        "train_dates": split.describe_training(),
        "val_dates": split.describe_validation(),
        "train_rows": n_train,
        "val_rows": n_val,
        **{f"train_rows_{k}": v for k, v in train_counts.items()},
        **{f"val_rows_{k}": v for k, v in val_counts.items()},
    }
    result = log_and_register(
        cfg,
        model_cfg,
        out_dir,
        day,
        lineage,
        warm_version,
        register=not args.no_register,
        wall_s=time.time() - t0,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(ckpt, ignore_errors=True)  # finished: the checkpoint has served its purpose
    print(
        f"[train] run {result['run_id']}"
        + (
            f" registered as {cfg.mlflow.registered_model} v{result['version']}"
            if result.get("version")
            else ""
        )
    )
    print(
        json.dumps(
            {
                k: result["metrics"].get(k)
                for k in ("auc/click/all", "auc/click/low", "gauc/click/all")
            }
        )
    )
    return 0
