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
) -> GateResult:
    """Pass when, for every segment in `tolerances`, new >= champion - tolerance on
    `{metric}/{task}/{segment}`. No champion → pass (the first model serves)."""
    if champion is None:
        return GateResult(True, ["no champion yet: the new model becomes the champion"])
    reasons, passed = [], True
    for segment, tol in tolerances.items():
        key = f"{metric}/{task}/{segment}"
        a, b = new.get(key, math.nan), champion.get(key, math.nan)
        if math.isnan(a):
            reasons.append(f"{key}: new model has no value (no labelled rows) — not gated")
            continue
        if math.isnan(b):
            reasons.append(f"{key}: champion has no value — not gated")
            continue
        ok = a >= b - tol
        passed &= ok
        reasons.append(
            f"{key}: new {a:.4f} vs champion {b:.4f} (tolerance {tol}) → {'ok' if ok else 'WORSE'}"
        )
    return GateResult(passed, reasons)
