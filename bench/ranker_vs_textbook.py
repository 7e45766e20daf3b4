"""Our base ranker (`ple`, trained by the product's trainer) against torch-rechub's PLE.

    python bench/ranker_vs_textbook.py --datasets kuairand,kuairand-long,movielens,movielens-1m,synthetic \\
        --kuairand-path DIR --seeds 0,1,2,3,4 [--set model.KEY=VALUE ...] [--out ranker_vs_textbook]

Each dataset is built by bench/quality.py's machinery (the product's own jobs, into a
lakehouse under --work-dir, cached) and split the product's way: train on the
`train.train_days` before D, choose the epoch on D, test on the days after D. The
split's rows are read once into memory, in the file layout `duia train` hands Petastorm.
Then, per seed:

- ours: variant `ple` as configured (`conf/default.yaml` + the dataset's config + any
  --set), trained by `training.trainer.Trainer` — the epochs, validation, selection,
  weight averaging and early stopping `duia train` runs — fed from memory instead of
  Petastorm, then scored on the test days with `DuiaRanker.predict`;
- textbook: torch-rechub's PLE on the same rows and inputs, the epoch chosen the same
  way (bench/textbook.py).

`kuairand-long` is KuaiRand-Pure restricted to the users with at least 15 exposures
before every one of their test days (the long-history regime), in training, validation
and test. Per dataset × task × segment: AUC and GAUC of both, the difference textbook −
ours, a paired t-test over seeds and a Wilcoxon signed-rank test over users of the
per-user AUC averaged over seeds. Beside it, where a pooled AUC differs, its two parts
(`pooled_auc_parts`): how well the users' mean scores order the rows (between users) and
how well the scores centred per user do (within users). Writes bench/results/<--out>.md
and .csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import quality as q
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEGMENTS_SHOWN = ("all", "low", "mid", "high")
LONG_HISTORY = 15  # kuairand-long: exposures before each test day, at least
OURS, TEXTBOOK = "ours", "textbook"
# The tasks every dataset's verdict is on (follow, comment, share have a few dozen
# positives in a test window: their AUCs are noise).
TASKS_COMPARED = ("click", "long_view", "like")


@dataclasses.dataclass(frozen=True)
class Frames:
    """One dataset's split in memory: column arrays in `select_training_columns` layout."""

    model_cfg: object
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]


def dataset_for(name: str) -> q.Dataset:
    return q.DATASETS["kuairand" if name == "kuairand-long" else name]


def load_cfg(ds: q.Dataset, work: Path, overrides: list[str]):
    from duia_spark.config import load_config

    return load_config(
        ROOT / ds.conf,
        [
            f"lakehouse.root={work / 'lake'}",
            f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
            f"mlflow.artifact_root={work / 'mlartifacts'}",
            f"train.checkpoint_dir={work / 'checkpoints'}",
            f"train.petastorm_cache_dir={work / 'petastorm'}",
            "spark.log_level=ERROR",
            *ds.overrides,
            *overrides,
        ],
    )


def read_frames(ds: q.Dataset, cfg, work: Path, source_path: str | None) -> Frames:
    """The split's rows as column arrays, cached under `work/frames` (Parquet)."""
    from duia_spark.contract import pandas_to_columns

    cache = work / "frames"
    names = ("train", "val", "test")
    if not all((cache / f"{n}.parquet").exists() for n in names):
        q.prepare(ds, cfg, work, source_path)
        _write_frames(ds, cfg, cache)
    mc = json.loads((cache / "model_config.json").read_text())
    from duia_spark.model.config import ModelConfig

    model_cfg = ModelConfig.from_dict(mc)
    cols = [pandas_to_columns(pd.read_parquet(cache / f"{n}.parquet")) for n in names]
    return Frames(model_cfg, *cols)


def _write_frames(ds: q.Dataset, cfg, cache: Path) -> None:
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session
    from duia_spark.stages.train import model_config_for_data
    from duia_spark.training.dataset import deterministic_layout, select_training_columns

    lake = Lakehouse(build_spark_session(cfg, "duia-ranker-vs-textbook"), cfg)
    mc = model_config_for_data(cfg, lake)
    samples, split = lake.read("samples"), q.split_of(ds, cfg)
    test_days = F.col("sample_date").between(
        ds.val_date + dt.timedelta(days=1), ds.val_date + dt.timedelta(days=ds.test_days)
    )
    cache.mkdir(parents=True, exist_ok=True)
    parts = {
        # the layout `duia train` writes for Petastorm (one process: 4 files)
        "train": deterministic_layout(select_training_columns(split.training_rows(samples), mc), 4),
        "val": select_training_columns(split.validation_rows(samples), mc),
        "test": select_training_columns(samples.where(test_days), mc),
    }
    for name, df in parts.items():
        df.toPandas().to_parquet(cache / f"{name}.parquet")  # a small study dataset
    (cache / "model_config.json").write_text(json.dumps(mc.to_dict()))
    q.log(f"{ds.name}: frames cached under {cache}")


def long_history_slice(frames: Frames, min_history: int = LONG_HISTORY) -> Frames:
    """Only the users with >= `min_history` exposures before each of their test days."""
    hist = np.count_nonzero(frames.test["hist_items"], axis=1)
    users = pd.Series(hist).groupby(frames.test["user_idx"]).min()
    keep = set(users.index[users >= min_history])

    def rows(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = np.isin(cols["user_idx"], list(keep))
        return {k: v[m] for k, v in cols.items()}

    return Frames(frames.model_cfg, rows(frames.train), rows(frames.val), rows(frames.test))


class MemoryRows:
    """Column arrays with the one method the trainer calls on a Petastorm converter:
    `make_torch_dataloader`. Batches run in the stored order through row groups of
    `ROW_GROUP` rows read in a seeded order, as Petastorm reads the converter's files."""

    ROW_GROUP = 16384

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.cols = cols
        self.n = len(cols["user_idx"])

    def make_torch_dataloader(self, batch_size, num_epochs=None, seed=0, **_):
        import contextlib

        return contextlib.nullcontext(self._batches(batch_size, num_epochs, seed))

    def _batches(self, batch_size: int, num_epochs, seed: int):
        rng = np.random.default_rng(seed)
        groups = np.arange(0, self.n, self.ROW_GROUP)
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            order = rng.permutation(groups) if num_epochs is None else groups
            idx = np.concatenate([np.arange(g, min(g + self.ROW_GROUP, self.n)) for g in order])
            for i in range(0, self.n, batch_size):
                take = idx[i : i + batch_size]
                yield {k: v[take] for k, v in self.cols.items()}
            epoch += 1


def ours_scores(name: str, frames: Frames, cfg, seed: int, work: Path) -> tuple[np.ndarray, dict]:
    """`train_ours`, cached per dataset, seed, model and training settings."""
    mc = dataclasses.replace(frames.model_cfg, **_model_overrides(cfg, frames.model_cfg))
    settings = {
        "dataset": name,
        "seed": seed,
        "model": mc.to_dict(),
        "train": dataclasses.asdict(cfg.train),
    }
    key = json.dumps(settings, sort_keys=True, default=str)
    path = work / "ours" / f"{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["scores"], {"epoch": int(saved["epoch"]), "epochs": int(saved["epochs"])}
    scores, kept = train_ours(frames, cfg, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, scores=scores, epoch=kept["epoch"], epochs=kept["epochs"])
    return scores, kept


def train_ours(frames: Frames, cfg, seed: int) -> tuple[np.ndarray, dict]:
    """Variant `ple` through the product's Trainer; -> (test scores [N, T], last record)."""
    import torch

    from duia_spark.contract import to_batch
    from duia_spark.training.loop import TrainJob
    from duia_spark.training.trainer import Trainer

    mc = dataclasses.replace(frames.model_cfg, variant="ple", seed=seed)
    mc = dataclasses.replace(mc, **_model_overrides(cfg, mc))
    torch.manual_seed(seed)
    np.random.seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        job = TrainJob(
            model_cfg=mc,
            train_cfg=cfg.train,
            train_data=MemoryRows(frames.train),
            val_data=MemoryRows(frames.val),
            train_rows=len(frames.train["user_idx"]),
            val_rows=len(frames.val["user_idx"]),
            out_dir=tmp + "/out",
            checkpoint_dir=tmp + "/ckpt",
        )
        trainer = Trainer(job, 0, 1, torch.device("cpu"))
        trainer.fit()
        model = trainer.model
    scores = []
    n, b = len(frames.test["user_idx"]), 8192
    for i in range(0, n, b):
        batch = to_batch({k: v[i : i + b] for k, v in frames.test.items()}, cfg=mc)
        scores.append(model.predict(batch).numpy())
    from duia_spark.training.metrics import selection_value

    history = trainer.selection.history
    values = [selection_value(r, cfg.train.selection_metric) for r in history]
    kept = int(np.nanargmax(values)) + 1 if history else 0
    return np.concatenate(scores), {"epoch": kept, "epochs": len(history)}


def _model_overrides(cfg, mc) -> dict:
    """The model knobs of the loaded config that are not data facts (the frames' model
    config carries the vocabulary sizes and input widths; --set model.* changes the rest)."""
    data_facts = {
        "n_users", "n_items", "n_categories", "n_authors", "n_user_dense", "n_item_dense",
        "seq_len", "pos_seq_len", "user_cat_buckets", "item_cat_buckets", "context_cat_buckets",
        "variant", "seed",
    }  # fmt: skip
    loaded = dataclasses.asdict(cfg.model)
    return {k: v for k, v in loaded.items() if k not in data_facts and getattr(mc, k) != v}


def selection_of(frames: Frames, cfg):
    """validate(predict) -> the selection value on the validation rows, as the trainer reads it."""
    from duia_spark.training.metrics import ranking_report, selection_value

    val = frames.val
    tasks = list(frames.model_cfg.tasks)

    def validate(predict) -> float:
        record = ranking_report(
            tasks, val["user_idx"], val["segment_idx"], val["labels"] > 0, predict(val),
            val["labels_known"] > 0,
        )  # fmt: skip
        return selection_value(record, cfg.train.selection_metric)

    return validate


def test_frame(frames: Frames, tasks) -> pd.DataFrame:
    """The test rows as bench/quality.py's `evaluate` reads them."""
    from duia_spark.contract import label_column
    from duia_spark.data.schema import SEGMENTS

    t = frames.test
    hist_len = np.count_nonzero(t["hist_items"], axis=1)
    df = pd.DataFrame(
        {
            "user_idx": t["user_idx"],
            "segment": np.asarray(SEGMENTS)[t["segment_idx"]],
            "hist_len": hist_len,
            "history": hist_len > 0,
        }
    )
    for i, task in enumerate(frames.model_cfg.tasks):
        if task in tasks:
            value, known = label_column(task)
            df[value], df[known] = t["labels"][:, i], t["labels_known"][:, i]
    return df


def compare(name: str, test: pd.DataFrame, tasks, res, seeds) -> tuple[list[str], list[dict]]:
    """Rows of the one table: ours, textbook, textbook − ours, p over seeds and users."""
    from scipy import stats

    lines, rows = [], []
    for t in tasks:
        for g in SEGMENTS_SHOWN:
            if (t, g) not in res[(OURS, seeds[0])]:
                continue
            row = {"dataset": name, "task": t, "segment": g}
            cells = []
            for metric, i in (("auc", 0), ("gauc", 1)):
                a = np.array([res[(OURS, s)][(t, g)][i] for s in seeds])
                b = np.array([res[(TEXTBOOK, s)][(t, g)][i] for s in seeds])
                p_seed = stats.ttest_rel(b, a).pvalue if len(seeds) > 1 else float("nan")
                row.update({f"{metric}_ours": np.nanmean(a), f"{metric}_textbook": np.nanmean(b),
                            f"{metric}_delta": np.nanmean(b - a), f"{metric}_p_seeds": p_seed})  # fmt: skip
                cells += [f"{np.nanmean(a):.4f}", f"{np.nanmean(b):.4f}",
                          f"{np.nanmean(b - a):+.4f}", f"{p_seed:.3f}"]  # fmt: skip
            ua = pd.DataFrame([res[(OURS, s)][(t, g)][2] for s in seeds]).mean()
            ub = pd.DataFrame([res[(TEXTBOOK, s)][(t, g)][2] for s in seeds]).mean()
            both = ua.index.intersection(ub.index)
            d = (ub[both] - ua[both]).to_numpy()
            row["gauc_p_users"] = stats.wilcoxon(d).pvalue if np.any(d != 0) else float("nan")
            cells.append(f"{row['gauc_p_users']:.3f}")
            verdict = _verdict(row)
            row["verdict"] = verdict
            lines.append(f"| {name} | {t} | {g} | " + " | ".join(cells) + f" | {verdict} |")
            rows.append(row)
    return lines, rows


def _verdict(row: dict) -> str:
    """'textbook ahead' / 'ours ahead' where a difference is significant (p < 0.05 over
    seeds, or for GAUC over users), else 'even'."""
    ahead = []
    for m in ("auc", "gauc"):
        ps = [row[f"{m}_p_seeds"]] + ([row["gauc_p_users"]] if m == "gauc" else [])
        if any(p < 0.05 for p in ps if not np.isnan(p)):
            ahead.append("textbook" if row[f"{m}_delta"] > 0 else "ours")
    if "textbook" in ahead:
        return "**textbook ahead**"
    return "ours ahead" if ahead else "even"


def pooled_auc_parts(users: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """A pooled AUC's two parts: (between, within). Between: the AUC of every row scored by
    its user's mean score (how well the model orders users); within: the AUC of the scores
    centred per user in logit space (how well it orders each user's items, pooled)."""
    from duia_spark.evaluation.auc import auc

    p = np.clip(s.astype(np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)

    def per_row_user_mean(v: np.ndarray) -> np.ndarray:
        return (np.bincount(inverse, weights=v) / counts)[inverse]

    return auc(y, per_row_user_mean(p)), auc(y, logit - per_row_user_mean(logit))


def decompose(name: str, test: pd.DataFrame, tasks, scores, seeds) -> list[str]:
    """Rows of the between / within table (each part averaged over seeds) for click and
    long_view in the mid- and high-active segments and overall."""
    from duia_spark.contract import label_column

    users = test["user_idx"].to_numpy()
    groups = q.segment_group_masks(test)
    lines = []
    for t in [t for t in tasks if t in ("click", "long_view")]:
        value, known = label_column(t)
        y = (test[value].to_numpy() > 0).astype(int)
        k = test[known].to_numpy() > 0
        for g in ("all", "mid", "high"):
            m = k & groups[g]
            if m.sum() == 0 or y[m].min() == y[m].max():
                continue
            parts = {
                who: np.mean(
                    [pooled_auc_parts(users[m], y[m], scores[(who, s)][t][m]) for s in seeds],
                    axis=0,
                )
                for who in (OURS, TEXTBOOK)
            }
            (ob, ow), (tb, tw) = parts[OURS], parts[TEXTBOOK]
            lines.append(
                f"| {name} | {t} | {g} | {ob:.4f} | {tb:.4f} | {tb - ob:+.4f} | "
                f"{ow:.4f} | {tw:.4f} | {tw - ow:+.4f} |"
            )
    return lines


def run_dataset(name: str, args, seeds) -> tuple[list[str], list[dict], list[str], list[str]]:
    ds = dataset_for(name)
    work = Path(args.work_dir) / ds.name
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_cfg(ds, work, args.set)
    frames = read_frames(ds, cfg, work, args.kuairand_path)
    if name == "kuairand-long":
        frames = long_history_slice(frames)
    tasks = [t for t in TASKS_COMPARED if t in ds.tasks and t in frames.model_cfg.tasks]
    test = test_frame(frames, tasks)
    validate = selection_of(frames, cfg)
    model_tasks = list(frames.model_cfg.tasks)
    scores, notes = {}, []
    for seed in seeds:
        t0 = time.time()
        ours, kept = ours_scores(name, frames, cfg, seed, work)
        q.log(f"{name}: ours seed {seed}: kept epoch {kept.get('epoch')} of {kept['epochs']} "
              f"in {time.time() - t0:.0f}s")  # fmt: skip
        notes.append(f"ours seed {seed}: epoch {kept.get('epoch')} kept of {kept['epochs']}")
        scores[(OURS, seed)] = {t: ours[:, model_tasks.index(t)] for t in tasks}
        chosen, epoch = textbook_scores(name, frames, cfg, seed, validate, work)
        scores[(TEXTBOOK, seed)] = {t: chosen[:, model_tasks.index(t)] for t in tasks}
        notes.append(f"textbook seed {seed}: epoch {epoch} kept")
    res = q.evaluate(test, tasks, scores)
    lines, rows = compare(name, test, tasks, res, seeds)
    n = len(frames.train["user_idx"])
    header = (
        f"{name}: {n:,} training rows, {len(test):,} test rows / {test.user_idx.nunique():,} "
        f"users, test history mean {test.hist_len.mean():.1f}; " + "; ".join(notes)
    )
    return lines, rows, [header], decompose(name, test, tasks, scores, seeds)


def textbook_scores(name: str, frames: Frames, cfg, seed: int, validate, work: Path):
    """torch-rechub's chosen test scores and epoch; cached per dataset, seed and the
    training settings it reads (it does not depend on our model's knobs)."""
    from textbook import train_textbook

    tc = cfg.train
    key = f"{name}|{seed}|{tc.epochs}|{tc.lr}|{tc.batch_size}|{tc.selection_metric}|{tc.early_stopping_patience}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = work / "textbook" / f"{digest}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["chosen"], int(saved["epoch"])
    run = train_textbook(frames.model_cfg, tc, frames.train, frames.test, seed, validate, q.log)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, chosen=run.chosen, epoch=run.best_epoch)
    return run.chosen, run.best_epoch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="movielens,synthetic")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument(
        "--work-dir", default="/tmp/duia-quality", help="lakehouses (shared with bench/quality.py)"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every dataset (e.g. train.epochs=5)")  # fmt: skip
    p.add_argument("--kuairand-path", metavar="DIR", help="KuaiRand-Pure folder (not shipped)")
    p.add_argument(
        "--out", default="ranker_vs_textbook", help="results file stem under bench/results/"
    )
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="build and cache the datasets' rows, train nothing",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.prepare_only:
        for name in a.datasets.split(","):
            ds = dataset_for(name)
            work = Path(a.work_dir) / ds.name
            work.mkdir(parents=True, exist_ok=True)
            read_frames(ds, load_cfg(ds, work, a.set), work, a.kuairand_path)
        return 0
    t0 = time.time()
    table = [
        "| dataset | task | segment | AUC ours | AUC textbook | Δ | p (seeds) | GAUC ours | "
        "GAUC textbook | Δ | p (seeds) | p (users) | verdict |",
        "| --- | --- | --- |" + " ---: |" * 9 + " --- |",
    ]
    parts = [
        "| dataset | task | segment | between: ours | textbook | Δ | within: ours | textbook | Δ |",
        "| --- | --- | --- |" + " ---: |" * 6,
    ]
    csv_rows, notes = [], []
    for name in a.datasets.split(","):
        lines, rows, header, between_within = run_dataset(name, a, seeds)
        table += lines
        csv_rows += rows
        notes += header
        parts += between_within
    lines = [
        "# Our ranker vs torch-rechub's PLE",
        "",
        f"{len(seeds)} seeds; Δ = textbook − ours (positive: the textbook ranks better); "
        "p: paired t-test over seeds, Wilcoxon signed-rank test over users of the per-user "
        "AUC averaged over seeds. Verdict: a difference with p < 0.05 either way.",
        "",
        *table,
        "",
        *[f"- {n}" for n in notes],
        "",
        "## A pooled AUC's two parts",
        "",
        "Between users: the AUC with every row scored by its user's mean score (how well "
        "the model orders users by how much they click); within users: the AUC of the scores "
        "centred per user (how well it orders each user's items). Each averaged over seeds; "
        "Δ = textbook − ours.",
        "",
        *parts,
        "",
        f"Total wall time {time.time() - t0:.0f} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / f"{a.out}.md", text)
    pd.DataFrame(csv_rows).to_csv(RESULTS / f"{a.out}.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
