"""Residual fusion: the head serves a segment only where it beat the base ranker on D.

With `enhancement_fusion: residual` the served score is base(x) + head(...), and the
base ranker is what variant "ple" trains. After training, the kept weights score the
validation day twice — with the head and with the base ranker alone — and the
selection metric is read per activity segment (`auc/click/all` → `auc/click/low`, ...).
While training, epochs are validated on the base ranker alone (`base_ranker_only`), so
the base keeps the epoch variant "ple" keeps and the head is judged only here.
A segment keeps the head's correction only when it scores higher with it (by more than
`train.residual_gate_margin`); elsewhere the head is switched off (`segment_on`, saved
with the weights) and the segment is served the base ranker's score. Where the memories
hold nothing the ranker's own inputs lack, the model then serves what "ple" serves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from duia_spark.model.config import SEGMENT_IDS
from duia_spark.model.ranker import DuiaRanker
from duia_spark.training.metrics import selection_value


def metric_for_segment(metric: str, segment: str) -> str:
    """`auc/click/all+gauc/click/all` → `auc/click/low+gauc/click/low`."""
    return "+".join(f"{key.strip().rsplit('/', 1)[0]}/{segment}" for key in metric.split("+"))


@contextlib.contextmanager
def base_ranker_only(model: DuiaRanker) -> Iterator[None]:
    """Within: the model serves its base ranker's scores (no residual head anywhere).
    Residual fusion validates the base this way while it trains, so the epoch (or the
    mean of epochs) it keeps is the one variant "ple" of the same seed keeps."""
    if model.residual is None:
        yield
        return
    model.residual_served = False
    try:
        yield
    finally:
        model.residual_served = True


def served_segments(gate: dict[str, float]) -> list[str]:
    """The segments a `gate_residual_head` record keeps the head for."""
    return [s for s in SEGMENT_IDS if gate.get(f"residual_gate/{s}/kept")]


def gate_residual_head(
    model: DuiaRanker, evaluate: Callable[[], dict], metric: str, margin: float = 0.0
) -> dict[str, float]:
    """Switch the residual head off in the segments where it does not beat the base on
    `evaluate()` (the validation day's ranking report). -> per segment: the metric with
    the head, without it, and whether the head was kept (1.0) or not (0.0)."""
    if model.residual is None:
        raise ValueError("the residual gate needs model.enhancement_fusion: residual")
    on = model.residual.segment_on
    before = on.detach().clone()
    with_head = evaluate()
    with base_ranker_only(model):
        base_only = evaluate()
    record: dict[str, float] = {}
    for name, idx in SEGMENT_IDS.items():
        key = metric_for_segment(metric, name)
        head, base = selection_value(with_head, key), selection_value(base_only, key)
        kept = bool(before[idx]) and not np.isnan(head) and not np.isnan(base)
        kept = kept and head > base + margin
        on[idx] = 1.0 if kept else 0.0
        record[f"residual_gate/{name}/with_head"] = head
        record[f"residual_gate/{name}/base"] = base
        record[f"residual_gate/{name}/kept"] = float(kept)
    return record
