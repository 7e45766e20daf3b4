"""Batch inference of the registered ranker inside Spark.

The driver reads the model's three files (weights, cluster memory, ModelConfig) once
and broadcasts their bytes; each Spark Python worker writes them to a private temp
folder and loads the ranker the first time a task needs it, then keeps it in a
module-level cache (Python workers are reused across tasks), so an executor loads the
model once, not once per task or batch. Rows travel to the worker as Arrow batches
(`mapInPandas`) and are scored `score.batch_size` rows at a time with the same
`score_frame` the pyfunc uses, so Spark and in-process scores agree.

Why not `mlflow.pyfunc.spark_udf`: it re-loads the pyfunc per worker from the
artifact URI (every executor must reach the MLflow store) and cannot return the
user memory's cluster assignment, which the cluster candidate generator needs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from duia_spark.config import Config
from duia_spark.contract import (
    MODEL_FILES,
    available_input_columns,
    pandas_to_columns,
    side_by_side_column,
    task_score_column,
    to_batch,
)
from duia_spark.data.samples import (
    item_dense_features,
    side_categorical_features,
    user_dense_features,
)
from duia_spark.model.config import ModelConfig
from duia_spark.model_checksums import download_checked_files


def feature_width_mismatches(model_cfg: ModelConfig, cfg: Config) -> list[str]:
    """What a model would read at another width than this config's samples hold
    ("<what>: model M, config C"); empty when it fits."""
    widths = {
        "sequences.exposures_len": (model_cfg.seq_len, cfg.sequences.exposures_len),
        "sequences.positives_len": (model_cfg.pos_seq_len, cfg.sequences.positives_len),
        "item_stats (item_dense width)": (
            model_cfg.n_item_dense,
            len(item_dense_features(cfg.item_stats, cfg.features)),
        ),
        "user_dense width": (model_cfg.n_user_dense, len(user_dense_features(cfg.features))),
        "features.*_categorical buckets": (
            model_cfg.side_cat_buckets,
            [n for _, _, n in side_categorical_features(cfg.features)],
        ),
    }
    return [f"{k}: model {m}, config {c}" for k, (m, c) in widths.items() if m != c]


@dataclass(frozen=True)
class ModelPayload:
    """What travels to the workers: the model's files as bytes, and a key naming them."""

    key: str  # "<name>/<version>/<sha256 prefix>": the workers' cache key
    files: dict[str, bytes]  # MODEL_FILES → bytes
    threads: int  # torch threads per worker (0: leave torch's default)

    @classmethod
    def from_files(
        cls, name: str, version: str, paths: dict[str, Path], threads: int
    ) -> ModelPayload:
        files = {k: Path(paths[k]).read_bytes() for k in MODEL_FILES}
        digest = hashlib.sha256(b"".join(files[k] for k in MODEL_FILES)).hexdigest()[:16]
        return cls(f"{name}/{version}/{digest}", files, threads)

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(json.loads(self.files["model_config"]))


def checked_payload(uri: str, label: str, dst: str, stage: str, advice: str) -> ModelPayload:
    """A logged or registered model (`runs:/…/model`, `models:/…`) downloaded to `dst`,
    its files checked against the sha256 recorded when it was logged (a damaged one
    raises ModelFilesError ending in `advice`), read into the payload the workers score
    with."""
    files = download_checked_files(uri, dst, MODEL_FILES, stage, advice)
    return ModelPayload.from_files(label, uri, files, threads=1)


# Loaded rankers per Python worker process, by payload key (insertion-ordered).
MAX_WORKER_MODELS = 4
_WORKER_MODELS: dict[str, object] = {}


def worker_model(payload: ModelPayload):
    """The ranker of `payload`, loaded once per Python process."""
    model = _WORKER_MODELS.get(payload.key)
    if model is None:
        import torch

        from duia_spark.training.pyfunc import load_ranker

        if payload.threads > 0:
            torch.set_num_threads(payload.threads)
        folder = Path(tempfile.mkdtemp(prefix="duia-score-"))
        paths = {}
        for name, data in payload.files.items():
            paths[name] = folder / name
            paths[name].write_bytes(data)
        model = load_ranker(
            str(paths["weights"]), str(paths["cluster_memory"]), str(paths["model_config"])
        )
        # Evaluation scores with a few models side by side; beyond that, oldest out.
        while len(_WORKER_MODELS) >= MAX_WORKER_MODELS:
            _WORKER_MODELS.pop(next(iter(_WORKER_MODELS)))
        _WORKER_MODELS[payload.key] = model
    return model


def broadcast_model(spark: SparkSession, payload: ModelPayload) -> Broadcast:
    return spark.sparkContext.broadcast(payload)


def score_features(
    features: DataFrame,
    model: Broadcast,
    tasks: list[str],
    batch_size: int,
    keep: tuple[str, ...] = ("user_id", "item_id"),
    column: Callable[[str], str] = task_score_column,
) -> DataFrame:
    """The `keep` columns plus one float score column per task (named by `column`) for
    rows holding the model's input columns."""
    model_inputs = [c for c in available_input_columns(features.columns) if c not in keep]
    inputs = features.select(*keep, *model_inputs)
    names = [column(t) for t in tasks]
    out_schema = T.StructType(
        [features.schema[c] for c in keep] + [T.StructField(n, T.FloatType()) for n in names]
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from duia_spark.training.pyfunc import score_frame

        ranker = worker_model(model.value)
        for frame in batches:
            scores = score_frame(ranker, frame, batch_size)
            out = frame[list(keep)].copy()
            for task, name in zip(tasks, names, strict=True):
                out[name] = scores[task].to_numpy()
            yield out

    return inputs.mapInPandas(score, out_schema)


def assign_user_clusters(features: DataFrame, model: Broadcast, batch_size: int) -> DataFrame:
    """(user_id, cluster): each row's level-1 centre in the model's user memory (GHCA
    retrieval on the query tower's vector). The query depends on the user alone, so
    one row per user with any item is enough."""
    model_inputs = available_input_columns(features.columns)
    inputs = features.select("user_id", *model_inputs)

    def assign(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch

        ranker = worker_model(model.value)
        for frame in batches:
            for start in range(0, len(frame), batch_size):
                part = frame.iloc[start : start + batch_size]
                batch = to_batch(pandas_to_columns(part[model_inputs]), cfg=ranker.cfg)
                with torch.no_grad():
                    parent = ranker(batch)["aux"]["user_retrieval"].parent
                yield pd.DataFrame(
                    {
                        "user_id": part["user_id"].to_numpy(),
                        "cluster": parent.numpy().astype("int32"),
                    }
                )

    return inputs.mapInPandas(assign, "user_id string, cluster int")


def score_side_by_side(
    spark: SparkSession,
    features: DataFrame,
    payloads: dict[str, ModelPayload],
    tasks: list[str],
    batch_size: int,
) -> DataFrame:
    """`features` plus one `side_by_side_column(label, task)` per model and task.

    One `mapInPandas` scores every model: a Python worker loads them all once and scores
    each Arrow batch with each in turn. (A pass per model would give every model its own
    Python worker per task, each with torch loaded.) Keep the models at most
    `MAX_WORKER_MODELS`, or the workers' model cache reloads them for every task."""
    models = {label: broadcast_model(spark, payload) for label, payload in payloads.items()}
    keep = list(features.columns)
    names = {label: [side_by_side_column(label, t) for t in tasks] for label in payloads}
    out_schema = T.StructType(
        list(features.schema.fields)
        + [T.StructField(n, T.FloatType()) for label in payloads for n in names[label]]
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from duia_spark.training.pyfunc import score_frame

        rankers = {label: worker_model(model.value) for label, model in models.items()}
        for frame in batches:
            out = frame[keep].copy()
            for label, ranker in rankers.items():
                scores = score_frame(ranker, frame, batch_size)
                for task, name in zip(tasks, names[label], strict=True):
                    out[name] = scores[task].to_numpy()
            yield out

    return features.mapInPandas(score, out_schema)


def model_payload(uri: str, label: str, dst: str) -> ModelPayload:
    """A logged or registered pyfunc model (`runs:/…/model`, `models:/…`) downloaded to
    `dst` and read into the payload the Spark workers score with (files unchecked: for
    the benchmarks' own runs)."""
    import mlflow

    from duia_spark.tracking import artifact_file

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst))
    files = {k: artifact_file(local, k) for k in MODEL_FILES}
    return ModelPayload.from_files(label, uri, files, threads=1)
