"""The quality gate: does the new model keep every activity segment at least as good as
the serving champion (within a tolerance)?"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]


def quality_gate(
    new: dict[str, float],
    champion: dict[str, float] | None,
    metric: str,
    task: str,
    tolerances: dict[str, float],
    name: str = "new model",
) -> GateResult:
    """Pass when, for every segment in `tolerances`, new >= champion - tolerance on
    `{metric}/{task}/{segment}`. No champion → pass (the first model serves).
    `name` is how the reasons call the candidate."""
    if champion is None:
        return GateResult(True, [f"no champion yet: the {name} becomes the champion"])
    reasons, passed = [], True
    for segment, tol in tolerances.items():
        key = f"{metric}/{task}/{segment}"
        a, b = new.get(key, math.nan), champion.get(key, math.nan)
        if math.isnan(a):
            reasons.append(f"{key}: {name} has no value (no labelled rows) — not gated")
            continue
        if math.isnan(b):
            reasons.append(f"{key}: champion has no value — not gated")
            continue
        ok = a >= b - tol
        passed &= ok
        reasons.append(
            f"{key}: {name} {a:.4f} vs champion {b:.4f} (tolerance {tol}) → {'ok' if ok else 'WORSE'}"
        )
    return GateResult(passed, reasons)


@dataclass(frozen=True)
class GuardResult:
    """Whether the same night's baseline beat the new model (and which one), and why."""

    winner: str | None  # label of the baseline that serves instead, None when the model held
    reasons: list[str]

    @property
    def held(self) -> bool:
        return self.winner is None


def baseline_guard(
    new: dict[str, float],
    baselines: dict[str, dict[str, float]],
    metrics: list[str],
    tasks: list[str],
    tolerances: dict[str, float],
    min_positives: int,
) -> GuardResult:
    """Does a baseline trained on the same data beat the new model beyond the tolerance
    in any segment of `tolerances`, on any of `metrics` × `tasks`?

    A cell is compared only where both models have a value and the validation day holds
    at least `min_positives` positives of the task in that segment (rare tasks on a small
    day are noise). When several baselines win, the one with the most losing cells of
    the new model serves (ties: the first listed)."""
    if not baselines:
        return GuardResult(None, ["no baseline trained for this date: nothing to compare"])
    reasons, losses = [], {}
    for label, base in baselines.items():
        lost = []
        for metric in metrics:
            for task in tasks:
                for segment, tol in tolerances.items():
                    key = f"{metric}/{task}/{segment}"
                    a, b = new.get(key, math.nan), base.get(key, math.nan)
                    positives = new.get(f"pos/{task}/{segment}", math.inf)
                    if math.isnan(a) or math.isnan(b) or positives < min_positives:
                        continue
                    if a < b - tol:
                        lost.append(f"{key}: new {a:.4f} < {label} {b:.4f} - {tol}")
        losses[label] = lost
        reasons += lost or [f"{label}: the new model holds every guarded cell"]
    worst = max(losses, key=lambda k: len(losses[k]))
    return GuardResult(worst if losses[worst] else None, reasons)
