"""AUC of one set of rows, and per user (GAUC's parts): the ranking metrics every layer
reports."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve with tied scores counted as half; NaN if one class only."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks over ties so that equal scores give no credit either way.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.concatenate([[0], np.cumsum(counts)[:-1]])  # 0-based rank of each value
    ranks = (first_rank + (counts + 1) / 2.0)[inverse]
    pos_rank_sum = ranks[labels == 1].sum()
    return float((pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_user_auc(
    users: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> dict[object, tuple[float, int]]:
    """{user: (AUC of their rows, their row count)} for the users with both classes."""
    users = np.asarray(users)
    order = np.argsort(users, kind="mergesort")
    u, y, s = users[order], np.asarray(labels)[order], np.asarray(scores)[order]
    cuts = np.flatnonzero(u[1:] != u[:-1]) + 1
    out = {}
    for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [u.size]]), strict=True):
        value = auc(y[a:b], s[a:b])
        if not np.isnan(value):
            out[u[a]] = (value, int(b - a))
    return out


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of per-user AUCs weighted by each user's exposures; users with one class skipped."""
    per_user = per_user_auc(users, labels, scores).values()
    weight = sum(n for _, n in per_user)
    return float(sum(value * n for value, n in per_user) / weight) if weight else float("nan")
