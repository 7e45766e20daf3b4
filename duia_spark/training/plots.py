"""PNG figures logged with every training run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from duia_spark.data.schema import SEGMENTS  # noqa: E402
from duia_spark.model.ranker import DuiaRanker  # noqa: E402

SEGMENT_COLOURS = {"low": "tab:red", "mid": "tab:orange", "high": "tab:blue"}


def training_curves(history: list[dict], tasks: list[str], path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [h["loss"] for h in history], marker="o", label="total")
    if any("loss/clustering" in h for h in history):
        a.plot(
            epochs,
            [h.get("loss/clustering", np.nan) for h in history],
            marker=".",
            label="clustering",
        )
    a.set(title="training loss", xlabel="epoch")
    a.legend()
    for t in tasks:
        b.plot(epochs, [h.get(f"auc/{t}/all", np.nan) for h in history], marker="o", label=t)
    b.set(title="validation AUC", xlabel="epoch")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def segment_auc_bars(report: dict, tasks: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 4))
    width = 0.8 / (len(SEGMENTS) + 1)
    x = np.arange(len(tasks))
    for i, seg in enumerate(["all", *SEGMENTS]):
        vals = [report.get(f"auc/{t}/{seg}", np.nan) for t in tasks]
        ax.bar(
            x + i * width,
            vals,
            width,
            label=f"{seg} (n={int(report.get(f'n/{seg}', 0))})",
            color=SEGMENT_COLOURS.get(seg, "tab:gray"),
        )
    ax.set_xticks(x + width * len(SEGMENTS) / 2, tasks)
    ax.set(ylim=(0.4, 1.0), ylabel="AUC", title="validation AUC per task and activity segment")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def centre_usage_histogram(model: DuiaRanker, path: Path) -> Path | None:
    mem = model.user_memory
    if mem is None:
        return None
    usage = (mem.usage1 + mem.prev_usage1).cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(usage, bins=40, color="tab:purple")
    ax.set(
        title=f"level-1 centre usage ({int((usage == 0).sum())} unused of {usage.size})",
        xlabel="assignments in the last two windows",
        ylabel="centres",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@torch.no_grad()
def centre_projection(model: DuiaRanker, path: Path) -> Path | None:
    """Level-1 centres in 2-D (PCA), coloured by the segment whose recent queries they serve most."""
    mem = model.user_memory
    if mem is None:
        return None
    centres = torch.nn.functional.normalize(mem.centres1.detach().float().cpu(), dim=-1)
    n = int(min(mem.recent_filled, mem.recent.shape[0]))
    dominant = np.full(centres.shape[0], -1)
    if n:
        q = torch.nn.functional.normalize(mem.recent[:n].float().cpu(), dim=-1)
        owner = (q @ centres.T).argmax(dim=1).numpy()
        seg = mem.recent_segment[:n].cpu().numpy()
        counts = np.zeros((centres.shape[0], len(SEGMENTS)))
        np.add.at(counts, (owner, np.clip(seg, 0, len(SEGMENTS) - 1)), 1)
        dominant = np.where(counts.sum(1) > 0, counts.argmax(1), -1)
    x = centres - centres.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, seg in enumerate(SEGMENTS):
        m = dominant == i
        ax.scatter(
            xy[m, 0], xy[m, 1], s=12, c=SEGMENT_COLOURS[seg], label=f"{seg} ({int(m.sum())})"
        )
    m = dominant < 0
    ax.scatter(xy[m, 0], xy[m, 1], s=8, c="lightgray", label=f"no recent queries ({int(m.sum())})")
    ax.set(title="user-memory centres (PCA), by dominant activity segment")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
