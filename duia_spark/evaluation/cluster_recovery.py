"""How well a clustering recovers planted groups: adjusted mutual information (AMI).

AMI = (MI - E[MI]) / (mean(H(a), H(b)) - E[MI]), with E[MI] the mutual information
expected of two random labelings with the same cluster sizes (the hypergeometric
model of Vinh, Epps and Bailey, 2010) and the arithmetic mean of the entropies: 1 when
the two labelings agree up to renaming, about 0 for independent ones, whatever the
number of clusters. Natural logarithms throughout.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(table: np.ndarray) -> float:
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j].astype(float)
    return float((nij / n * np.log(n * nij / (rows[i] * cols[j]))).sum())


def expected_mutual_information(table: np.ndarray) -> float:
    """E[MI] under the permutation model, for the margins of `table`."""
    n = int(table.sum())
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    log_fact = gammaln(np.arange(n + 1) + 1.0)  # log(k!) for k = 0..n
    emi = 0.0
    for a in rows:
        for b in cols:
            lo, hi = max(1, a + b - n), min(a, b)
            if lo > hi:
                continue
            k = np.arange(lo, hi + 1)
            log_p = (
                log_fact[a] + log_fact[b] + log_fact[n - a] + log_fact[n - b]
                - log_fact[n] - log_fact[k] - log_fact[a - k] - log_fact[b - k]
                - log_fact[n - a - b + k]
            )  # fmt: skip
            emi += float((k / n * np.log(n * k / (a * b)) * np.exp(log_p)).sum())
    return emi


def adjusted_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """AMI of two labelings of the same items (any hashable labels); nan for no items."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length: {a.shape} vs {b.shape}")
    if a.size == 0:
        return float("nan")
    table = _contingency(a, b)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0  # one cluster each: identical
    mi, emi = mutual_information(table), expected_mutual_information(table)
    mean_h = (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2
    denominator = mean_h - emi
    if abs(denominator) < 1e-12:
        return 0.0
    return float((mi - emi) / denominator)
