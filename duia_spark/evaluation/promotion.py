"""Which model serves after a night's evaluation: the baseline guard picks the candidate
(the new model, or a same-night baseline that beat it), the quality gate compares the
candidate with the champion, and the decision says which version serves and why.

Pure: the metrics in, a decision out; `stages/evaluate.py` reads and writes MLflow."""

from __future__ import annotations

from dataclasses import dataclass, replace

from duia_spark.config import EvaluateConfig
from duia_spark.evaluation.gate import GateResult, GuardResult, baseline_guard, quality_gate


@dataclass(frozen=True)
class Verdict:
    """The guard's and the gate's findings on one night's metrics."""

    candidate: str  # "new", or the label of the baseline that beat it
    guard: GuardResult | None  # None: the guard is off
    gate: GateResult


def judge(metrics: dict[str, dict[str, float]], ev: EvaluateConfig, tasks: list[str]) -> Verdict:
    """Guard the new model against the night's baselines, then gate the candidate
    (the new model, or the baseline that beat it) against the champion."""
    baselines = {b: metrics[b] for b in ev.baselines if b in metrics}
    guard = None
    if ev.baseline_guard:
        guard = baseline_guard(
            metrics["new"],
            baselines,
            list(ev.guard_metrics),
            list(ev.guard_tasks or tasks),
            ev.guard_tolerance_map,
            ev.guard_min_positives,
        )
    candidate = "new" if guard is None or guard.held else guard.winner
    gate = quality_gate(
        metrics[candidate],
        metrics.get("champion"),
        ev.gate_metric,
        ev.gate_task,
        ev.gate_tolerances,
        name="new model" if candidate == "new" else f"{candidate} baseline",
    )
    return Verdict(candidate, guard, gate)


@dataclass(frozen=True)
class ServingDecision:
    """Which registered version serves after this evaluation, and why."""

    version: str | None  # the version that serves (None: no champion at all, or see below)
    promote: bool  # move the champion alias to `version`
    headline: str  # one line for the console
    reason: str  # the full why, for the report, MLflow tags and the version's tags
    # A baseline to register first: its new version then serves (`baseline_registered`).
    register_baseline: str | None = None

    @property
    def summary(self) -> str:
        return f"serving: {self.headline}\n{self.reason}"

    def baseline_registered(self, version: str) -> ServingDecision:
        """This decision once its baseline is registered as `version`."""
        return replace(
            self,
            version=version,
            headline=self.headline.replace("{version}", version),
            register_baseline=None,
        )


@dataclass(frozen=True)
class Names:
    """How the decision names things: the registered model, its alias, the main variant."""

    model: str
    alias: str
    variant: str


def serving_decision(
    verdict: Verdict,
    new_version: str,
    champion_version: str | None,
    promote_allowed: bool,
    names: Names,
) -> ServingDecision:
    """The new model serves when the guard held and the gate passed; a baseline that beat
    it serves when it passes the gate itself; otherwise the champion keeps serving."""
    gate, guard, candidate = verdict.gate, verdict.guard, verdict.candidate
    keep = f"v{champion_version} keeps serving" if champion_version else "no model serves yet"
    gate_why = "\n".join(f"  gate: {r}" for r in gate.reasons)
    if candidate == "new":
        if not gate.passed:
            headline = f"gate FAILED: {keep}; v{new_version} not promoted"
            return ServingDecision(champion_version, False, headline, gate_why)
        if not promote_allowed:
            headline = f"gate passed, --no-promote: {keep}"
            return ServingDecision(champion_version, False, headline, gate_why)
        held = "" if guard is None else "\n".join(f"  guard: {r}" for r in guard.reasons) + "\n"
        headline = f"gate passed: {names.model} v{new_version} is now '{names.alias}'"
        return ServingDecision(new_version, True, headline, held + gate_why)
    lost = "\n".join(f"  guard: {r}" for r in guard.reasons if guard.winner in r)
    why = f"the same night's {candidate} baseline beat v{new_version} ({names.variant}):\n{lost}"
    if not gate.passed or not promote_allowed:
        step = "--no-promote" if gate.passed else f"and the {candidate} baseline failed the gate"
        headline = f"v{new_version} lost to the {candidate} baseline {step}: {keep}"
        return ServingDecision(champion_version, False, headline, why + "\n" + gate_why)
    headline = (
        f"v{new_version} lost to the {candidate} baseline: {candidate} registered as "
        f"v{{version}} and is now '{names.alias}'"
    )
    return ServingDecision(None, True, headline, why + "\n" + gate_why, candidate)
