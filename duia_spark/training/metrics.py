"""AUC and GAUC (user-weighted AUC), overall and per activity segment — numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duia_spark.data.schema import SEGMENTS
from duia_spark.evaluation.auc import auc, gauc


def selection_value(record: dict[str, float], metric: str) -> float:
    """The validation number an epoch is kept by: one metric of a ranking report, or the
    mean of several joined by '+' (`auc/click/all+gauc/click/all`); NaN if one is missing."""
    keys = [key.strip() for key in metric.split("+")]
    if any(k.startswith("auc/") for k in record):  # an epoch that was validated
        for key in keys:
            if key not in record:
                raise ValueError(
                    f"train.selection_metric: {key!r} is not a validation metric; they are "
                    "named <auc|gauc>/<task of model.tasks>/<all|low|mid|high>"
                )
    values = [record.get(key, float("nan")) for key in keys]
    return float(np.mean(values)) if not any(np.isnan(v) for v in values) else float("nan")


@dataclass(frozen=True)
class ScoredRows:
    """One model's predictions for a set of labelled rows: `users`, `segments` [N];
    `labels`, `scores`, `known` [N, T] (known: the row's label for that task exists)."""

    users: np.ndarray
    segments: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    known: np.ndarray

    def report(self, tasks: list[str]) -> dict[str, float]:
        return ranking_report(
            tasks, self.users, self.segments, self.labels, self.scores, self.known
        )


def ranking_report(
    tasks: list[str],
    users: np.ndarray,
    segments: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    known: np.ndarray | None = None,
) -> dict[str, float]:
    """`{"auc/click/all": ..., "gauc/like/low": ..., "n/low": ...}` for every task × segment.

    `labels`/`scores` are [N, T]; `segments` holds segment indices (0 low, 1 mid, 2 high);
    `known` [N, T] masks rows whose label is missing in the source.
    """
    out: dict[str, float] = {}
    groups = {"all": np.ones(len(users), dtype=bool)}
    groups.update({name: segments == i for i, name in enumerate(SEGMENTS)})
    for gname, gmask in groups.items():
        out[f"n/{gname}"] = float(gmask.sum())
        for t, task in enumerate(tasks):
            m = gmask if known is None else gmask & known[:, t].astype(bool)
            out[f"auc/{task}/{gname}"] = auc(labels[m, t], scores[m, t])
            out[f"gauc/{task}/{gname}"] = gauc(users[m], labels[m, t], scores[m, t])
    return out
