"""Score a DataFrame of sample rows with a logged ranker, inside Spark.

The model folder's files are read once on the driver and broadcast; each Python worker
materialises the ranker once (a module-level cache keyed by the broadcast id) and scores
Arrow batches through `mapInPandas`. Nothing is collected to the driver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from duia_spark.training.dataset import ARRAY_COLUMNS, ID_COLUMNS
from duia_spark.training.pyfunc import ARTIFACT_CONFIG, ARTIFACT_MEMORY, ARTIFACT_WEIGHTS

_WORKER_MODELS: dict[str, object] = {}


def _artifact_bytes(model_dir: Path) -> dict[str, bytes]:
    from duia_spark.tracking import artifact_file

    return {
        name: artifact_file(model_dir, name).read_bytes()
        for name in (ARTIFACT_WEIGHTS, ARTIFACT_MEMORY, ARTIFACT_CONFIG)
    }


def _worker_model(bc, key: str):
    model = _WORKER_MODELS.get(key)
    if model is None:
        import tempfile

        import torch

        from duia_spark.training.pyfunc import load_ranker

        torch.set_num_threads(1)  # one Spark task per core already
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for name, blob in bc.value.items():
                paths[name] = f"{tmp}/{name}"
                Path(paths[name]).write_bytes(blob)
            model = load_ranker(
                paths[ARTIFACT_WEIGHTS], paths[ARTIFACT_MEMORY], paths[ARTIFACT_CONFIG]
            )
        _WORKER_MODELS[key] = model
    return model


def score_with_model(
    spark: SparkSession,
    rows: DataFrame,
    model_dir: str | Path,
    tasks: list[str],
    prefix: str = "",
    batch_rows: int = 4096,
) -> DataFrame:
    """`rows` plus one float column per task (`{prefix}{task}`), scored by the model in
    `model_dir` (a downloaded MLflow pyfunc folder)."""
    from duia_spark.training.pyfunc import score_frame

    blobs = _artifact_bytes(Path(model_dir))
    key = hashlib.sha1(blobs[ARTIFACT_WEIGHTS] + blobs[ARTIFACT_MEMORY]).hexdigest()
    bc = spark.sparkContext.broadcast(blobs)
    needed = [*ID_COLUMNS, *ARRAY_COLUMNS]
    out_schema = T.StructType(
        [*rows.schema.fields, *[T.StructField(f"{prefix}{t}", T.FloatType()) for t in tasks]]
    )

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _worker_model(bc, key)
        for pdf in batches:
            scores = score_frame(model, pdf[needed], batch_rows)
            for t in tasks:
                pdf[f"{prefix}{t}"] = scores[t].to_numpy()
            yield pdf

    return rows.mapInPandas(score, out_schema)
