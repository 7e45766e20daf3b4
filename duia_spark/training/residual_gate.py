"""Residual fusion: the head serves a segment only where it beat the base ranker on D.

With `enhancement_fusion: residual` the served score is base(x) + head(...), and the
base ranker is what variant "ple" trains. After training, the kept weights score the
validation day twice — with the head and with the base ranker alone — and the
selection metric is read per activity segment (`auc/click/all` → `auc/click/low`, ...).
While training, epochs are validated on the base ranker alone (`base_ranker_only`), so
the base keeps the epoch variant "ple" keeps and the head is judged only here.
A segment keeps the head's correction only when it scores higher with it (by more than
`train.residual_gate_margin`) and the head ranks its users' rows better beyond chance
(`train.residual_gate_alpha`: a one-sided Wilcoxon signed-rank test over the segment's
users of each user's AUC with the head minus without it, on the selection metric's
binary tasks), so a lead that one day's noise could give, or that a few users carry, is
not served; elsewhere the head is switched off (`segment_on`, saved
with the weights) and the segment is served the base ranker's score. Where the memories
hold nothing the ranker's own inputs lack, the model then serves what "ple" serves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
from scipy import stats

from duia_spark.evaluation.auc import per_user_auc
from duia_spark.model.config import SEGMENT_IDS
from duia_spark.model.ranker import DuiaRanker
from duia_spark.training.metrics import ScoredRows, selection_value


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


def gate_evidence(gate: dict[str, float], metric: str) -> list[str]:
    """One line per segment of a `gate_residual_head` record: the selection metric with
    the head and without it, the users' test, and the verdict."""
    lines = []
    for s in SEGMENT_IDS:
        if f"residual_gate/{s}/kept" not in gate:
            continue
        head, base = gate[f"residual_gate/{s}/with_head"], gate[f"residual_gate/{s}/base"]
        verdict = "served" if gate[f"residual_gate/{s}/kept"] else "off"
        lines.append(
            f"{s}: {metric_for_segment(metric, s)} {head:.4f} with the head, {base:.4f} "
            f"without ({head - base:+.4f}); users ranked better p = "
            f"{gate[f'residual_gate/{s}/p_users']:.3g} over "
            f"{gate[f'residual_gate/{s}/users']:,.0f} users → {verdict}"
        )
    return lines


def metric_tasks(metric: str) -> list[str]:
    """`auc/click/all+gauc/long_view/all` → ['click', 'long_view']."""
    tasks = [key.strip().split("/")[1] for key in metric.split("+")]
    return list(dict.fromkeys(tasks))


def user_ranking_gain_p_value(
    base: ScoredRows, head: ScoredRows, mask: np.ndarray, tasks: list[int]
) -> tuple[float, int]:
    """One-sided Wilcoxon signed-rank test over users that the head ranks each user's
    rows better: per user (rows in `mask`) with both classes of a task, their AUC with
    the head minus without it, averaged over `tasks` (binary tasks). -> (p, users
    tested); p = 1.0 when fewer than two users' AUCs differ."""
    gains: dict = {}
    for t in tasks:
        rows = mask & base.known[:, t].astype(bool)
        users, labels = base.users[rows], base.labels[rows, t]
        with_head = per_user_auc(users, labels, head.scores[rows, t])
        without = per_user_auc(users, labels, base.scores[rows, t])
        for user, (value, _) in with_head.items():
            gains.setdefault(user, []).append(value - without[user][0])
    per_user = np.array([np.mean(g) for g in gains.values()], dtype=np.float64)
    if np.count_nonzero(per_user) < 2:
        return 1.0, int(per_user.size)
    test = stats.wilcoxon(per_user, alternative="greater", zero_method="wilcox")
    return float(test.pvalue), int(per_user.size)


def gate_residual_head(
    model: DuiaRanker,
    predict: Callable[[], ScoredRows | None],
    metric: str,
    margin: float = 0.0,
    alpha: float = 1.0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Switch the residual head off in the segments where it does not beat the base on
    `predict()` (the validation day's rows): its selection metric must be higher by more
    than `margin` and its users' rows ranked better at p < `alpha` (1.0: no test). -> (per
    segment: the metric with the head and without it, the test's p and users, whether
    the head was kept (1.0) or not (0.0); the ranking report of what is now served)."""
    if model.residual is None:
        raise ValueError("the residual gate needs model.enhancement_fusion: residual")
    on = model.residual.segment_on
    before = on.detach().clone()
    tasks = model.cfg.tasks
    with_head = predict()
    with base_ranker_only(model):
        base_only = predict()
    record: dict[str, float] = {}
    if with_head is None or base_only is None:
        on.zero_()
        return record, {}
    head_report, base_report = with_head.report(tasks), base_only.report(tasks)
    metric_indices = [tasks.index(t) for t in metric_tasks(metric) if t in tasks]
    test_tasks = [t for t in metric_indices if not model.regression[t]]  # AUC: binary only
    for name, idx in SEGMENT_IDS.items():
        key = metric_for_segment(metric, name)
        head, base = selection_value(head_report, key), selection_value(base_report, key)
        in_segment = base_only.segments == idx
        p, n_users = user_ranking_gain_p_value(base_only, with_head, in_segment, test_tasks)
        kept = bool(before[idx]) and not np.isnan(head) and not np.isnan(base)
        kept = kept and head > base + margin and (alpha >= 1.0 or p < alpha)
        on[idx] = 1.0 if kept else 0.0
        record[f"residual_gate/{name}/with_head"] = head
        record[f"residual_gate/{name}/base"] = base
        record[f"residual_gate/{name}/p_users"] = p
        record[f"residual_gate/{name}/users"] = float(n_users)
        record[f"residual_gate/{name}/kept"] = float(kept)
    # Served now: the head's scores where it is on, the base's elsewhere (what the
    # gated model computes, without a third pass over the day).
    served_on = on.detach().cpu().numpy()[base_only.segments].astype(bool)
    served = ScoredRows(
        base_only.users,
        base_only.segments,
        base_only.labels,
        np.where(served_on[:, None], with_head.scores, base_only.scores),
        base_only.known,
    )
    return record, served.report(tasks)
