"""Incremental vs full retrain over consecutive nights: what continuing from last night's
model on the new day costs or gains in ranking quality.

For each dataset the bench takes `--nights` consecutive nights D1..Dn (KuaiRand-Pure:
2022-05-04..05-07; the synthetic world: 2026-01-15..01-18), each validated on D and
scored on D + 1, and trains the shipped configuration (`load_config` of the dataset's
conf, variant and fusion as the nightly ships them) through the product's Trainer on
in-memory rows, per seed:

- full: every night from scratch on the `train.train_days` days before D (a full
  retrain; from night 2 on it starts from the previous full night's cluster memories, as
  the train stage does);
- incremental: night 1 is the full model; each later night starts from the previous
  incremental night's weights and memories and trains on day D - 1 only, with the model
  it started from validated as epoch 0 (the train stage's `validate_start`) and the
  optimizer's state continued from it.

Reported per task and segment: AUC and GAUC on D + 1 averaged over nights 2..n (the
nights where the two differ), incremental − full, p over seeds (paired t on the
per-seed means) and over users (Wilcoxon on the per-user AUC differences), and the
training rows and seconds per night. `make bench-incremental`; KuaiRand needs
`--kuairand-path` (never stored in the repository).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as q  # noqa: E402  (bench/ is the script's folder)
import ranker_vs_textbook as rt  # noqa: E402
from provenance import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FULL, INCR = "full", "incremental"


def day_frames(ds: q.Dataset, cfg, work: Path, days: list[dt.date], source: str | None):
    """{day: column arrays} of gold.samples, cached per day under `work/days`."""
    cache = work / "days"
    paths = {d: cache / f"{d}.parquet" for d in days}
    if not all(p.exists() for p in paths.values()):
        _write_days(ds, cfg, work, [d for d, p in paths.items() if not p.exists()], source)
    from duia_spark.contract import pandas_to_columns

    return {d: pandas_to_columns(pd.read_parquet(p)) for d, p in paths.items()}


def _write_days(ds: q.Dataset, cfg, work: Path, days: list[dt.date], source) -> None:
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session
    from duia_spark.training.dataset import deterministic_layout, select_training_columns

    mc = rt.read_frames(ds, cfg, work, source).model_cfg  # prepares the lakehouse first
    lake = Lakehouse(build_spark_session(cfg, "duia-bench-incremental"), cfg)
    samples = lake.read("samples")
    (work / "days").mkdir(parents=True, exist_ok=True)
    for d in days:
        rows = select_training_columns(samples.where(F.col("sample_date") == d), mc)
        deterministic_layout(rows, 4).toPandas().to_parquet(work / "days" / f"{d}.parquet")
        q.log(f"{ds.name}: rows of {d} cached")


def concat(frames: dict[dt.date, dict], days: list[dt.date]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([frames[d][k] for d in days]) for k in frames[days[0]]}


@dataclasses.dataclass
class Night:
    scores: np.ndarray  # [test rows, tasks]
    out_dir: Path  # weights.pt and cluster_memory.safetensors of the kept model
    train_rows: int
    seconds: float
    kept_epoch: int


def reused_night(mc, cfg, train, test, out: Path) -> Night:
    """A night a previous run of this bench trained and left in `out` (`--reuse-models`):
    its kept model scores the test day again; its training time is not known."""
    import json

    from duia_spark.training.metrics import selection_value
    from duia_spark.training.pyfunc import load_ranker

    model = load_ranker(
        str(out / "weights.pt"),
        str(out / "cluster_memory.safetensors"),
        str(out / "model_config.json"),
    )
    history = json.loads((out / "history.json").read_text())["history"]
    values = [selection_value(r, cfg.train.selection_metric) for r in history]
    kept = int(history[int(np.nanargmax(values))]["epoch"])
    return Night(predict(model, mc, test), out, len(train["user_idx"]), float("nan"), kept)


def predict(model, mc, test) -> np.ndarray:
    from duia_spark.contract import to_batch

    scores = []
    n, b = len(test["user_idx"]), 8192
    for i in range(0, n, b):
        batch = to_batch({k: v[i : i + b] for k, v in test.items()}, cfg=mc)
        scores.append(model.predict(batch).numpy())
    return np.concatenate(scores)


def train_night(
    mc, cfg, train, val, test, seed: int, out: Path, start: Path | None, memory_only, reuse=False
):
    """The product's Trainer on in-memory rows; `start`: the earlier model's folder."""
    if reuse and (out / "_SUCCESS").exists():
        return reused_night(mc, cfg, train, test, out)
    import torch

    from duia_spark.training.loop import TrainJob
    from duia_spark.training.trainer import Trainer

    torch.manual_seed(seed)
    np.random.seed(seed)
    warm = {}
    if start is not None:
        warm["warm_memory"] = str(start / "cluster_memory.safetensors")
        if not memory_only:
            warm["warm_weights"] = str(start / "weights.pt")
            warm["validate_start"] = True
            if (start / "optimizer.pt").exists():
                warm["warm_optimizer"] = str(start / "optimizer.pt")
    with tempfile.TemporaryDirectory() as tmp:
        job = TrainJob(
            model_cfg=dataclasses.replace(mc, seed=seed),
            train_cfg=cfg.train,
            train_data=rt.MemoryRows(train),
            val_data=rt.MemoryRows(val),
            train_rows=len(train["user_idx"]),
            val_rows=len(val["user_idx"]),
            out_dir=str(out),
            checkpoint_dir=tmp,
            **warm,
        )
        t0 = time.time()
        trainer = Trainer(job, 0, 1, torch.device("cpu"))
        trainer.fit()
        seconds = time.time() - t0
    from duia_spark.training.metrics import selection_value

    history = trainer.selection.history
    values = [selection_value(r, cfg.train.selection_metric) for r in history]
    kept = int(history[int(np.nanargmax(values))]["epoch"]) if history else -1
    return Night(predict(trainer.model, mc, test), out, len(train["user_idx"]), seconds, kept)


def run_dataset(name: str, args, seeds: list[int], work_root: Path):
    ds = q.DATASETS[name]
    work = work_root / name
    cfg = rt.load_cfg(ds, work, args.set)
    mc = dataclasses.replace(
        rt.read_frames(ds, cfg, work, args.kuairand_path).model_cfg, variant=cfg.model.variant
    )
    mc = dataclasses.replace(mc, **rt._model_overrides(cfg, mc))
    nights = [ds.val_date + dt.timedelta(days=i) for i in range(args.nights)]
    first = nights[0] - dt.timedelta(days=cfg.train.train_days)
    days = [first + dt.timedelta(days=i) for i in range((nights[-1] - first).days + 2)]
    frames = day_frames(ds, cfg, work, days, args.kuairand_path)
    tasks = [t for t in rt.TASKS_COMPARED if t in ds.tasks and t in mc.tasks]
    model_tasks = list(mc.tasks)
    q.log(
        f"{name}: {mc.variant} ({mc.enhancement_fusion} fusion), nights {nights[0]}..{nights[-1]}"
    )
    runs: dict = {}
    for seed in seeds:
        prev = {FULL: None, INCR: None}
        for i, night in enumerate(nights):
            val, test = frames[night], frames[night + dt.timedelta(days=1)]
            window = [night - dt.timedelta(days=k) for k in range(cfg.train.train_days, 0, -1)]
            out = work / "incremental-bench" / f"seed{seed}" / str(night)
            full = train_night(mc, cfg, concat(frames, window), val, test, seed, out / FULL,
                               prev[FULL], memory_only=True, reuse=args.reuse_models)  # fmt: skip
            runs[(FULL, seed, night)] = full
            if i == 0:
                runs[(INCR, seed, night)] = full
            else:
                new = [night - dt.timedelta(days=1)]
                runs[(INCR, seed, night)] = train_night(
                    mc,
                    cfg,
                    concat(frames, new),
                    val,
                    test,
                    seed,
                    out / INCR,
                    prev[INCR],
                    False,
                    reuse=args.reuse_models,
                )
            prev = {FULL: full.out_dir, INCR: runs[(INCR, seed, night)].out_dir}
            f, n = runs[(FULL, seed, night)], runs[(INCR, seed, night)]
            q.log(f"{name} seed {seed} {night}: full {f.train_rows:,} rows {f.seconds:.0f}s "
                  f"(epoch {f.kept_epoch}); incremental {n.train_rows:,} rows {n.seconds:.0f}s "
                  f"(epoch {n.kept_epoch})")  # fmt: skip
    return compare(name, frames, nights, tasks, model_tasks, mc, runs, seeds)


def compare(name, frames, nights, tasks, model_tasks, mc, runs, seeds):
    """Table rows: per task and segment, nights 2..n averaged, incremental vs full."""
    from scipy import stats

    per_night = {}
    for night in nights[1:]:
        test_cols = frames[night + dt.timedelta(days=1)]
        test = rt.test_frame(rt.Frames(mc, {}, {}, test_cols), tasks)
        scores = {
            (mode, seed): {
                t: runs[(mode, seed, night)].scores[:, model_tasks.index(t)] for t in tasks
            }
            for mode in (FULL, INCR)
            for seed in seeds
        }
        per_night[night] = q.evaluate(test, tasks, scores)
    lines, rows = [], []
    for t in tasks:
        for g in rt.SEGMENTS_SHOWN:
            row = {"dataset": name, "task": t, "segment": g}
            cells = []
            for metric, i in (("auc", 0), ("gauc", 1)):
                a = np.array(
                    [
                        np.nanmean([per_night[n][(FULL, s)][(t, g)][i] for n in per_night])
                        for s in seeds
                    ]
                )
                b = np.array(
                    [
                        np.nanmean([per_night[n][(INCR, s)][(t, g)][i] for n in per_night])
                        for s in seeds
                    ]
                )
                p = stats.ttest_rel(b, a).pvalue if len(seeds) > 1 else float("nan")
                row.update({f"{metric}_full": a.mean(), f"{metric}_incremental": b.mean(),
                            f"{metric}_delta": (b - a).mean(), f"{metric}_p_seeds": p})  # fmt: skip
                cells += [
                    f"{a.mean():.4f}",
                    f"{b.mean():.4f}",
                    f"{(b - a).mean():+.4f}",
                    f"{p:.3f}",
                ]
            diffs = []
            for n in per_night:
                for s in seeds:
                    ua = pd.Series(per_night[n][(FULL, s)][(t, g)][2])
                    ub = pd.Series(per_night[n][(INCR, s)][(t, g)][2])
                    both = ua.index.intersection(ub.index)
                    diffs.append((ub[both] - ua[both]).to_numpy())
            d = np.concatenate(diffs) if diffs else np.zeros(0)
            row["gauc_p_users"] = stats.wilcoxon(d).pvalue if np.any(d != 0) else float("nan")
            cells.append(f"{row['gauc_p_users']:.3f}")
            lines.append(f"| {name} | {t} | {g} | " + " | ".join(cells) + " |")
            rows.append(row)
    cost = []
    for night in nights:
        f = [runs[(FULL, s, night)] for s in seeds]
        n = [runs[(INCR, s, night)] for s in seeds]
        cost.append(
            f"| {name} | {night} | {f[0].train_rows:,} | {_seconds(f)} | "
            f"{n[0].train_rows:,} | {_seconds(n)} | "
            f"{', '.join(str(x.kept_epoch) for x in f)} | {', '.join(str(x.kept_epoch) for x in n)} |"
        )
    return lines, rows, cost


def _seconds(nights: list[Night]) -> str:
    s = [x.seconds for x in nights if not np.isnan(x.seconds)]
    return f"{np.mean(s):.0f}" if s else "reused"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="synthetic,kuairand")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--nights", type=int, default=4)
    p.add_argument("--work-dir", default=str(ROOT / ".duia" / "bench-quality"))
    p.add_argument("--kuairand-path", help="KuaiRand-Pure folder (not stored in the repository)")
    p.add_argument("--set", action="append", default=[], help="config override (KEY=VALUE)")
    p.add_argument(
        "--reuse-models",
        action="store_true",
        help="score the models an earlier run left under the work folder instead of training "
        "them again (a run cut short; the same code's Trainer)",
    )
    p.add_argument("--out", default=str(RESULTS / "incremental.md"))
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines, cost = [], []
    for name in args.datasets.split(","):
        got, _, c = run_dataset(name, args, seeds, Path(args.work_dir))
        lines += got
        cost += c
    head = ("| dataset | task | segment | AUC full | AUC incr. | Δ | p seeds | GAUC full | "
            "GAUC incr. | Δ | p seeds | p users |")  # fmt: skip
    md = [
        "# Incremental vs full retrain over consecutive nights",
        "",
        f"Seeds {args.seeds}; nights 2..{args.nights} averaged (night 1 is the same model). "
        "Δ = incremental − full; p over seeds: paired t on the per-seed means; p over users: "
        "Wilcoxon signed-rank on per-user AUC differences (every night and seed).",
        "",
        head,
        "|" + " --- |" * 3 + " ---: |" * 9,
        *lines,
        "",
        "## Cost per night (training rows, seconds on this machine; epoch kept per seed, "
        "0 = the model it started from)",
        "",
        "| dataset | night | full rows | full s | incr. rows | incr. s | full kept | incr. kept |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
        *cost,
    ]
    text = "\n".join(md)
    print(text)
    write_result(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
