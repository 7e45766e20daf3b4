"""The evaluation report: a fixed-width table for logs and a PNG for MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from duia_spark.data.schema import SEGMENTS  # noqa: E402
from duia_spark.evaluation.gate import GateResult, GuardResult  # noqa: E402

GROUPS = ("all", *SEGMENTS)


def _f(x: float | None) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def format_report(
    day,
    labels: dict[str, str],
    metrics: dict,
    feeds: dict | None,
    tasks: list[str],
    gate: GateResult | None,
    guard: GuardResult | None = None,
) -> str:
    lines = [f"== evaluation of {day} =="]
    n = metrics[next(iter(metrics))]
    lines.append("rows: " + ", ".join(f"{g} {int(n.get(f'n/{g}', 0)):,}" for g in GROUPS))
    head = f"{'model':<28s} {'task':<10s} " + " ".join(f"{'AUC ' + g:>10s}" for g in GROUPS)
    head += " " + " ".join(f"{'GAUC ' + g:>10s}" for g in GROUPS)
    lines += [head, "-" * len(head)]
    for m, label in labels.items():
        for t in tasks:
            row = f"{label:<28.28s} {t:<10s} "
            row += " ".join(f"{_f(metrics[m].get(f'auc/{t}/{g}')):>10s}" for g in GROUPS)
            row += " " + " ".join(f"{_f(metrics[m].get(f'gauc/{t}/{g}')):>10s}" for g in GROUPS)
            lines.append(row)
    if feeds:
        lines.append("")
        lines.append(
            "simulated feed (ground truth): UVC = expected valid views / user, UDT = expected dwell s / user"
        )
        head = (
            f"{'model':<28s} "
            + " ".join(f"{'UVC ' + g:>10s}" for g in GROUPS)
            + " "
            + " ".join(f"{'UDT ' + g:>10s}" for g in GROUPS)
        )
        lines += [head, "-" * len(head)]
        for m in [*labels, "oracle"]:
            label = labels.get(m, "oracle (true ranking)")
            row = f"{label:<28.28s} "
            row += " ".join(f"{_f(feeds.get((m, g), {}).get('uvc')):>10s}" for g in GROUPS)
            row += " " + " ".join(
                f"{feeds.get((m, g), {}).get('udt_s', float('nan')):>10.1f}" for g in GROUPS
            )
            lines.append(row)
    if guard is not None:
        lines.append("")
        verdict = "held" if guard.held else f"LOST to the {guard.winner} baseline"
        lines.append(f"baseline guard (new model vs the same night's baselines): {verdict}")
        lines += [f"  {r}" for r in guard.reasons]
    if gate is not None:
        lines.append("")
        lines.append(f"quality gate: {'PASSED' if gate.passed else 'FAILED'}")
        lines += [f"  {r}" for r in gate.reasons]
    return "\n".join(lines)


def comparison_chart(metrics: dict, feeds: dict | None, tasks: list[str], path: Path) -> Path:
    models = list(metrics)
    n_plots = 2 if feeds else 1
    fig, axes = plt.subplots(1, n_plots, figsize=(6 * n_plots, 4), squeeze=False)
    width = 0.8 / len(models)
    x = np.arange(len(GROUPS))
    task = tasks[0]
    ax = axes[0][0]
    for i, m in enumerate(models):
        ax.bar(
            x + i * width,
            [metrics[m].get(f"auc/{task}/{g}", np.nan) for g in GROUPS],
            width,
            label=m,
        )
    ax.set_xticks(x + width * (len(models) - 1) / 2, GROUPS)
    ax.set(ylabel=f"AUC ({task})", ylim=(0.45, 1.0), title="offline AUC by activity segment")
    ax.legend(fontsize=7)
    if feeds:
        ax = axes[0][1]
        all_models = [*models, "oracle"]
        width = 0.8 / len(all_models)
        for i, m in enumerate(all_models):
            ax.bar(
                x + i * width,
                [feeds.get((m, g), {}).get("uvc", np.nan) for g in GROUPS],
                width,
                label=m,
            )
        ax.set_xticks(x + width * (len(all_models) - 1) / 2, GROUPS)
        ax.set(ylabel="expected valid views / user", title="simulated feed (UVC-like)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
