"""The registered model as an MLflow pyfunc: sample rows in, per-task scores out.

The model directory holds the network weights, the cluster memory (safetensors, the
same file the next night warm-starts from) and the ModelConfig, so a registered
version alone is enough to score or to continue stream clustering.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from duia_spark.contract import (
    ARTIFACT_CONFIG,
    ARTIFACT_MEMORY,
    ARTIFACT_WEIGHTS,
    input_columns,
    pandas_to_columns,
    to_batch,
)
from duia_spark.model.config import ModelConfig
from duia_spark.model.ranker import DuiaRanker, build_ranker

SCORE_BATCH = 4096


def load_ranker(weights: str, memory: str, config: str, device: str = "cpu") -> DuiaRanker:
    cfg = ModelConfig.from_dict(json.loads(Path(config).read_text()))
    model = build_ranker(cfg, device)
    model.load_weights(torch.load(weights, map_location=device))
    model.load_memory(memory)
    model.eval()
    return model


def score_frame(
    model: DuiaRanker, frame: pd.DataFrame, batch_size: int = SCORE_BATCH
) -> pd.DataFrame:
    """Per-task scores (float32 columns named after the tasks) for rows of gold.samples."""
    columns = input_columns(model.cfg)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"scoring input is missing column(s): {', '.join(missing)}")
    outs = []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size][columns]
        outs.append(model.predict(to_batch(pandas_to_columns(part), cfg=model.cfg)).numpy())
    scores = np.concatenate(outs) if outs else np.zeros((0, len(model.cfg.tasks)), np.float32)
    return pd.DataFrame(scores.astype(np.float32), columns=model.cfg.tasks, index=frame.index)


class DuiaPyfuncModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        a = context.artifacts
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.model = load_ranker(a[ARTIFACT_WEIGHTS], a[ARTIFACT_MEMORY], a[ARTIFACT_CONFIG])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return score_frame(self.model, model_input)
