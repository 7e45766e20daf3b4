"""`duia train --date D`: gold.samples → Petastorm → TorchDistributor (DDP) → MLflow.

Validates on D (with train.validation_days N > 1: the last N days up to D) and trains
on the days since the model it continues from — the champion, or for a run that is not
registered (the baselines) its variant's last run — starting from that model's weights,
cluster memories and residual head (training/incremental.py): one day in a normal night.
With no earlier model, `--full`, or the full-retrain schedule it trains on the whole
[D - train.train_days, D) window instead (training/split.py), starting from the
earlier model's cluster memories only; `--cold-start` starts from nothing. The driver alone talks to MLflow: it
logs params, per-epoch metrics, plots, lineage, the pyfunc model with its cluster
memory, and registers the version. A run that stops before its last epoch registers
nothing; `--resume` continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from duia_spark.config import Config
from duia_spark.data.samples import item_dense_features, user_dense_features
from duia_spark.data.schema import SEGMENTS
from duia_spark.lakehouse import Lakehouse
from duia_spark.session import build_spark_session
from duia_spark.stale_days import rebuilt_since
from duia_spark.training.dataset import (
    check_sample_columns,
    deterministic_layout,
    select_training_columns,
)
from duia_spark.training.incremental import FULL, TrainingPlan, plan_training
from duia_spark.training.loop import TrainJob, train_rank, wants_gpu
from duia_spark.training.split import TemporalSplit, temporal_split

NAME = "train"
HELP = "train PLE+DUIA on gold.samples (TorchDistributor), log and register it in MLflow"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped run from its last checkpoint"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="retrain on the whole train.train_days window (default: continue from the last "
        "model on the days since its data date)",
    )
    p.add_argument(
        "--cold-start",
        action="store_true",
        help="start from nothing: no earlier model's weights or cluster memory (implies --full)",
    )
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


@dataclass(frozen=True)
class TrainRequest:
    """One training run: the night D it trains for, and how."""

    day: dt.date
    variant: str | None = None  # None: model.variant
    resume: bool = False  # continue a stopped run from its last checkpoint
    cold_start: bool = False  # start from nothing, on the whole window (also train.cold_start)
    full: bool = False  # retrain on the whole window (else incremental when there is a model)
    serves: bool = True  # the variant the registry serves (False: a baseline beside it)
    register: bool = True  # register a model version (else: log the run only)


@dataclass(frozen=True)
class _Rows:
    """The split's training and validation rows, counted per segment."""

    split: TemporalSplit
    train: DataFrame
    val: DataFrame
    train_counts: dict[str, int]
    val_counts: dict[str, int]

    @property
    def n_train(self) -> int:
        return sum(self.train_counts.values())

    @property
    def n_val(self) -> int:
        return sum(self.val_counts.values())

    def lineage(self, lake: Lakehouse) -> dict:
        return {
            "samples_version": lake.version("samples"),
            "vocabulary_version": lake.version("vocabulary"),
            "train_dates": self.split.describe_training(),
            "val_dates": self.split.describe_validation(),
            "train_rows": self.n_train,
            "val_rows": self.n_val,
            **{f"train_rows_{k}": v for k, v in self.train_counts.items()},
            **{f"val_rows_{k}": v for k, v in self.val_counts.items()},
        }


def _split_rows(cfg: Config, lake: Lakehouse, split: TemporalSplit, variant: str) -> _Rows:
    """The split's rows of gold.samples; fails naming the window without rows."""
    samples = lake.read("samples")
    check_sample_columns(samples.columns, cfg.model)
    train_df, val_df = split.training_rows(samples), split.validation_rows(samples)
    rows = _Rows(split, train_df, val_df, _segment_counts(train_df), _segment_counts(val_df))
    if rows.n_train == 0:
        raise ValueError(split.no_samples_message("training"))
    if rows.n_val == 0:
        raise ValueError(split.no_samples_message("validation"))
    print(
        f"[train] {variant}: {rows.n_train:,} training rows {split.describe_training()} "
        f"{rows.train_counts}"
    )
    print(
        f"[train] {rows.n_val:,} validation rows on {split.describe_validation()} {rows.val_counts}"
    )
    return rows


def _full_plan(cfg: Config, day: dt.date, reason: str) -> TrainingPlan:
    """A full retrain of D's window, printed with its reason."""
    window = temporal_split(day, cfg.train.train_days, cfg.train.validation_days)
    plan = TrainingPlan(FULL, window, None, reason)
    print(f"[train] {plan.describe()}")
    return plan


def _plan(
    cfg: Config, lake: Lakehouse, request: TrainRequest, variant: str
) -> tuple[TrainingPlan, object]:
    """The night's training plan (full or incremental) and the earlier model (or None)
    whose files it starts from; prints both in one line."""
    from duia_spark.training.registry import earlier_model

    tc = cfg.train
    if tc.cold_start or request.cold_start:
        return _full_plan(cfg, request.day, "cold start, no earlier model used"), None
    # the served variant continues the champion's line; another (a baseline) its own runs
    earlier = earlier_model(cfg, variant, request.day, registered=request.serves)
    rebuilt = None
    if earlier is not None and earlier.trained_at is not None:
        rebuilt = rebuilt_since(lake, earlier.trained_at, request.day)
    plan = plan_training(
        request.day,
        tc.train_days,
        tc.validation_days,
        earlier,
        incremental=tc.incremental,
        full_requested=request.full,
        full_retrain_every_days=tc.full_retrain_every_days,
        rebuilt_from=rebuilt,
    )
    print(f"[train] {plan.describe()}")
    return plan, earlier


def _start_files(cfg: Config, plan: TrainingPlan, earlier, folder: Path):
    """The files to start from: an incremental night takes the earlier model's weights
    (its residual head included), memories and optimizer state; a full retrain only its
    memories (the clustering streams across nights)."""
    from duia_spark.training.registry import StartFiles, download_start_files

    if earlier is None:
        return StartFiles()
    files = download_start_files(cfg, earlier, folder, incremental=plan.incremental)
    if not plan.incremental:
        what = "cluster memories"
    elif files.optimizer:
        what = "weights, cluster memories and optimizer state"
    else:
        what = "weights and cluster memories"
    print(f"[train] starts from the {what} of {earlier.label} ({earlier.data_date})")
    return files


def _full_if_weights_do_not_fit(cfg: Config, plan: TrainingPlan, start, model_cfg, day: dt.date):
    """An incremental night whose earlier weights are another architecture's (a release
    that changed the ranker's layout, or changed model knobs) retrains the window instead:
    continuing would train the entries that do not fit from their initial values on one
    day. The earlier model's cluster memories still seed the full retrain."""
    import torch

    from duia_spark.model.ranker import DuiaRanker
    from duia_spark.training.checkpoint import weights_left_unfilled
    from duia_spark.training.registry import StartFiles

    if not (plan.incremental and start.weights):
        return plan, start
    # memory-mapped: only the shapes are read, not tables of millions of rows
    saved = torch.load(start.weights, map_location="cpu", mmap=True, weights_only=True)
    own = DuiaRanker(model_cfg, materialise=False).state_dict()  # big tables stay on meta
    unfilled = weights_left_unfilled(own, saved)
    if not unfilled:
        return plan, start
    shown = ", ".join(unfilled[:3]) + (
        f" and {len(unfilled) - 3} more" if len(unfilled) > 3 else ""
    )
    reason = (
        f"the weights of {plan.start.label} do not fit this model ({shown}: another "
        "architecture or model settings), so the window is retrained"
    )
    return _full_plan(cfg, day, reason), StartFiles(memory=start.memory)


def _converters(spark, cfg: Config, model_cfg, rows: _Rows) -> tuple:
    """Petastorm converters of the training and validation rows, in a stable file order."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    tc = cfg.train
    cache = Path(cfg.resolve_path(tc.petastorm_cache_dir))
    cache.mkdir(parents=True, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
    parts = max(4, 2 * tc.num_processes)  # at least as many row groups as ranks
    train_conv = make_spark_converter(
        deterministic_layout(select_training_columns(rows.train, model_cfg), parts)
    )
    val_conv = make_spark_converter(
        deterministic_layout(select_training_columns(rows.val, model_cfg), 2)
    )
    # Petastorm takes its file list from a Set (`inputFiles()`), so its order changes from
    # run to run; part-NNNNN file names sorted restore the partition order.
    for conv in (train_conv, val_conv):
        conv.file_urls = sorted(conv.file_urls)
    return train_conv, val_conv


def _train_distributed(cfg: Config, job: TrainJob, converters: tuple) -> None:
    """train_rank on train.num_processes ranks (TorchDistributor); the converters' cached
    files are deleted afterwards, whatever happens."""
    from pyspark.ml.torch.distributor import TorchDistributor

    tc = cfg.train
    try:
        TorchDistributor(
            num_processes=tc.num_processes, local_mode=tc.local_mode, use_gpu=wants_gpu(tc.use_gpu)
        ).run(train_rank, job)
    finally:
        for conv in converters:
            conv.delete()


def _print_result(cfg: Config, result: dict) -> None:
    version = result.get("version")
    registered = f" registered as {cfg.mlflow.registered_model} v{version}" if version else ""
    print(f"[train] run {result['run_id']}{registered}")
    keys = ("auc/click/all", "auc/click/low", "gauc/click/all")
    print(json.dumps({k: result["metrics"].get(k) for k in keys}))


def train(cfg: Config, request: TrainRequest) -> int:
    """Train on the split of D, log the run and (unless asked not to) register it."""
    if request.variant and request.variant != cfg.model.variant:
        model = dataclasses.replace(cfg.model, variant=request.variant)
        cfg = dataclasses.replace(cfg, model=model)
        request = dataclasses.replace(request, serves=False)
    from duia_spark import tracking
    from duia_spark.training.registry import log_and_register

    spark = build_spark_session(cfg, "duia-train")
    lake = Lakehouse(spark, cfg)
    day = request.day
    tracking.configure_mlflow(cfg)
    plan, earlier = _plan(cfg, lake, request, cfg.model.variant)
    model_cfg = model_config_for_data(cfg, lake)
    tmp = Path(tempfile.mkdtemp(prefix="duia-train-"))
    start = _start_files(cfg, plan, earlier, tmp / "earlier")
    plan, start = _full_if_weights_do_not_fit(cfg, plan, start, model_cfg, request.day)
    rows = _split_rows(cfg, lake, plan.split, cfg.model.variant)
    converters = _converters(spark, cfg, model_cfg, rows)
    ckpt = Path(cfg.resolve_path(cfg.train.checkpoint_dir))
    ckpt = ckpt / f"{day}_{model_cfg.variant.replace('+', '_')}"
    if not request.resume and ckpt.exists():
        shutil.rmtree(ckpt)
    out_dir = tmp / "result"
    job = TrainJob(
        model_cfg=model_cfg,
        train_cfg=cfg.train,
        train_data=converters[0],
        val_data=converters[1],
        train_rows=rows.n_train,
        val_rows=rows.n_val,
        out_dir=str(out_dir),
        checkpoint_dir=str(ckpt),
        resume=request.resume,
        warm_memory=start.memory,
        warm_weights=start.weights,
        warm_optimizer=start.optimizer,
        # an incremental night keeps the model it started from unless an epoch beats it
        validate_start=plan.incremental,
    )
    t0 = time.time()
    _train_distributed(cfg, job, converters)
    if not (out_dir / "_SUCCESS").exists():
        print(
            "[train] stopped before the last epoch; nothing registered. Continue with "
            f"--resume (checkpoint {ckpt})"
        )
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    result = log_and_register(
        cfg,
        model_cfg,
        out_dir,
        day,
        rows.lineage(lake),
        plan,
        earlier,
        register=request.register,
        wall_s=time.time() - t0,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(ckpt, ignore_errors=True)  # finished: the checkpoint has served its purpose
    _print_result(cfg, result)
    return 0


def run(cfg: Config, args: argparse.Namespace) -> int:
    if args.date is None:
        raise ValueError("train needs --date D (trains on the days before D, validates on D)")
    request = TrainRequest(
        day=args.date,
        variant=args.variant,
        resume=args.resume,
        cold_start=args.cold_start,
        full=args.full,
        register=not args.no_register,
    )
    return train(cfg, request)
