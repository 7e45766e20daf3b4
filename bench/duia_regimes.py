"""A positive control for DUIA: `ple` vs `ple+duia` across synthetic worlds built to the
paper's premise.

    python bench/duia_regimes.py [--cells central,groups8,...] [--seeds 0,1,2] \\
        [--work-dir /tmp/duia-regimes] [--out duia_regimes]          (make bench-regimes)

The premise: a low-active user's own signals say little, while users like them — found
by clustering everyone's learned interests — say much. Each cell is a world of the
generator (`generator.*` knobs, docs/pipeline.md) built by the product's own jobs
(`duia generate`, `ingest`, `backfill`) into its own lakehouse under --work-dir
(cached), split as bench/quality.py splits the synthetic world (train the
`train.train_days` before D = 2026-01-15, choose the epoch on D, test on the 6 late days
after it). Per seed, three models train through the product's `Trainer` from memory
(bench/ranker_vs_textbook.py's machinery): `ple`, `ple+duia` with the paper's input
fusion, and `ple+duia` with the shipped residual fusion and its gate. Reported per
cell, against `ple` of the same seed: AUC and GAUC per segment and per cohort (the
generator's sparse and new users), with a paired t-test over seeds and a Wilcoxon test
over users; the simulated feed's expected valid views (UVC) and dwell (UDT) against the
generator's truth; and the memories' health — how well the level-1 clusters of the
test users' queries recover the planted groups (adjusted mutual information), dead
centres, usage entropy, the share of low-active rows a centre reached, the query
tower's auxiliary AUC, and the segments the residual gate served.
Writes bench/results/<--out>.md and .csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import quality as q
import ranker_vs_textbook as rvt
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TASKS = ("click", "long_view")
SEGMENTS = ("all", "low", "mid", "high", "sparse", "new")
# (label, variant, fusion): what every seed trains.
MODELS = (
    ("ple", "ple", None),
    ("duia-input", "ple+duia", "input"),
    ("duia-residual", "ple+duia", "residual"),
)
# The central cell, then one axis at a time around it.
CENTRAL = {
    "users": 3000, "items": 3000, "days": 21, "groups": 64, "topics": 128,
    "latent_dim": 32, "popularity_skew": 3.0, "profile_informativeness": 0.0,
    "sparse_user_share": 0.4, "sparse_user_events": [1, 3], "new_user_share": 0.05,
}  # fmt: skip
CELLS = {
    "central": {},
    "groups8": {"groups": 8, "topics": 8, "latent_dim": 8},
    "groups256": {"groups": 256, "topics": 256},
    "profile0.5": {"profile_informativeness": 0.5},
    "history5-10": {"sparse_user_events": [5, 10]},
    "users30k": {"users": 30000, "items": 10000},
    # the default world's knobs, for reference
    "default": {"groups": 8, "topics": 8, "latent_dim": 8, "items": 600, "popularity_skew": 2.0,
                "sparse_user_share": 0.0, "new_user_share": 0.0},
}  # fmt: skip


def world_of(cell: str) -> dict:
    return {**CENTRAL, **CELLS[cell]}


def cell_cfg(world: dict, work: Path):
    sets = [f"generator.{k}={json.dumps(v)}" for k, v in world.items()]
    sets.append("features.user_categorical={community: 1024}")
    return rvt.load_cfg(q.DATASETS["synthetic"], work, sets)


def prepare_world(cell: str, world: dict, work: Path):
    """The cell's raw drops (generated once), its lakehouse and its split in memory."""
    cfg = cell_cfg(world, work)
    raw = work / "raw"
    if not (raw / "_manifest.json").exists():
        q.stage(cfg, "generate", "--out", str(raw))
    frames = rvt.read_frames(q.DATASETS["synthetic"], cfg, work, None)
    return cfg, frames


def test_ids(cfg, frames, work: Path) -> pd.DataFrame:
    """user_id, item_id, duration_ms, group, cohort of every test row (vocabulary and truth)."""
    cache = work / "frames" / "test_ids.parquet"
    if not cache.exists():
        from pyspark.sql import functions as F

        from duia_spark.lakehouse import Lakehouse
        from duia_spark.session import build_spark_session

        lake = Lakehouse(build_spark_session(cfg, "duia-regimes"), cfg)
        vocab = (
            lake.read("vocabulary")
            .where(F.col("kind").isin("user", "item"))
            .select("kind", "id", "idx")
            .toPandas()  # one row per user and item of a study world
        )
        users = vocab[vocab.kind == "user"].set_index("idx")["id"]
        items = vocab[vocab.kind == "item"].set_index("idx")["id"]
        ids = pd.DataFrame(
            {
                "user_id": users.reindex(frames.test["user_idx"]).to_numpy(),
                "item_id": items.reindex(frames.test["item_idx"]).to_numpy(),
            }
        )
        truth = pd.read_parquet(work / "raw" / "truth" / "users.parquet")
        ids = ids.merge(truth[["user_id", "group", "cohort"]], on="user_id", how="left")
        durations = pd.read_csv(work / "raw" / "items" / "items.csv")
        ids = ids.merge(
            durations.rename(columns={"video_id": "item_id"})[["item_id", "duration_ms"]],
            on="item_id",
            how="left",
        )
        ids.to_parquet(cache)
    return pd.read_parquet(cache)


def truth_latents(work: Path, user_ids: pd.Series, item_ids: pd.Series | None = None):
    """The planted latent vectors of these users (and items): [N, d] arrays."""
    truth = work / "raw" / "truth"
    tu = pd.read_parquet(truth / "users.parquet").set_index("user_id")["latent"]
    users = np.stack(tu.loc[user_ids].to_numpy())
    if item_ids is None:
        return users
    ti = pd.read_parquet(truth / "items.parquet").set_index("video_id")["latent"]
    return users, np.stack(ti.loc[item_ids].to_numpy())


def ghca_on_truth(work: Path, ids: pd.DataFrame, mc, seed: int, epochs: int = 5) -> float:
    """The clustering alone, fed the planted interests instead of the query tower's q:
    GHCA's memory (the model's K1, K2 and settings) trained by its own loss and SGD on
    the test rows' true user vectors; -> AMI of each user's level-1 cluster against the
    planted groups. The ceiling of the AMI column: what GHCA recovers from clean queries."""
    import torch

    from duia_spark.evaluation.cluster_recovery import adjusted_mutual_information
    from duia_spark.model.ghca import ClusterMemory

    torch.manual_seed(seed)
    x = torch.tensor(truth_latents(work, ids["user_id"]), dtype=torch.float32)
    x = torch.nn.functional.normalize(x, dim=1)
    mem = ClusterMemory(
        mc.k1, mc.k2, x.shape[1], hierarchical=mc.hierarchical, balanced_sampling=False,
        dead_centre_window=mc.dead_centre_window, dead_centre_min_usage=mc.dead_centre_min_usage,
        recent_queries=mc.recent_queries, seed=seed,
    )  # fmt: skip
    opt = torch.optim.SGD(mem.centre_parameters(), lr=mc.cluster_lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(1024):
            q = x[idx]
            mem.prepare(q, None)
            r = mem.retrieve(q, 1)
            w = torch.ones(len(q))
            opt.zero_grad()
            mem.clustering_loss(q, r, w).backward()
            opt.step()
            mem.observe(q, r, None, w)
    first = ~ids["user_id"].duplicated().to_numpy()
    with torch.no_grad():
        parent = mem.retrieve(x[torch.from_numpy(first)], 1).parent.numpy()
    return adjusted_mutual_information(ids["group"].to_numpy()[first], parent)


# ------------------------------------------------------------------ training
def train_model(frames, cfg, variant: str, fusion: str | None, seed: int, work: Path) -> dict:
    """One model through the product's Trainer; cached per world, model and seed.
    -> {"scores": [N, T], "parent": [N] level-1 winner (-1 without memory), "reached":
    [N] a centre was kept, "aux": [N] query tower's auxiliary logit, "health": {...}}."""
    mc = dataclasses.replace(frames.model_cfg, variant=variant, seed=seed)
    mc = dataclasses.replace(mc, **rvt._model_overrides(cfg, mc))
    if fusion is not None:
        mc = dataclasses.replace(mc, enhancement_fusion=fusion)
    key = json.dumps({"model": mc.to_dict(), "train": dataclasses.asdict(cfg.train)},
                     sort_keys=True, default=str)  # fmt: skip
    path = work / "models" / f"{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        out = {k: saved[k] for k in ("scores", "parent", "reached", "aux")}
        out["health"] = json.loads(str(saved["health"]))
        return out
    out = _train(frames, cfg, mc, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: out[k] for k in ("scores", "parent", "reached", "aux")},
             health=json.dumps(out["health"]))  # fmt: skip
    return out


def _train(frames, cfg, mc, seed: int) -> dict:
    import torch

    from duia_spark.contract import to_batch
    from duia_spark.training.loop import TrainJob
    from duia_spark.training.residual_gate import served_segments
    from duia_spark.training.trainer import Trainer

    torch.manual_seed(seed)
    np.random.seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        job = TrainJob(
            model_cfg=mc, train_cfg=cfg.train,
            train_data=rvt.MemoryRows(frames.train), val_data=rvt.MemoryRows(frames.val),
            train_rows=len(frames.train["user_idx"]), val_rows=len(frames.val["user_idx"]),
            out_dir=tmp + "/out", checkpoint_dir=tmp + "/ckpt",
        )  # fmt: skip
        trainer = Trainer(job, 0, 1, torch.device("cpu"))
        trainer.fit()
        summary = json.loads((Path(tmp) / "out" / "history.json").read_text())
    model = trainer.model.eval()
    scores, parent, reached, aux = [], [], [], []
    n, b = len(frames.test["user_idx"]), 8192
    with torch.no_grad():
        for i in range(0, n, b):
            batch = to_batch({k: v[i : i + b] for k, v in frames.test.items()}, cfg=mc)
            scores.append(model.predict(batch).numpy())
            a = model(batch)["aux"]
            rows = len(batch["user_idx"])
            if "user_retrieval" in a:
                parent.append(a["user_retrieval"].parent.numpy())
                reached.append(a["uie_mask"].float().numpy())
                aux.append(a["aux_logit"].reshape(-1).numpy())
            else:
                parent.append(np.full(rows, -1))
                reached.append(np.zeros(rows))
                aux.append(np.zeros(rows))
    history = summary["history"]
    health = {"epochs": len(history), "kept_epoch": _kept_epoch(history, cfg)}
    if model.duia is not None:
        health.update(model.duia.cluster_metrics())
    if "residual_gate" in summary:
        health["served"] = served_segments(summary["residual_gate"])
    return {
        "scores": np.concatenate(scores),
        "parent": np.concatenate(parent).astype(np.int64),
        "reached": np.concatenate(reached),
        "aux": np.concatenate(aux),
        "health": health,
    }


def _kept_epoch(history, cfg) -> int:
    from duia_spark.training.metrics import selection_value

    values = [selection_value(r, cfg.train.selection_metric) for r in history]
    return int(np.nanargmax(values)) + 1 if values else 0


# ------------------------------------------------------------------ evaluation
def group_masks(test: pd.DataFrame, ids: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks of the segments and of the generator's sparse and new cohorts (those
    the world has)."""
    seg, cohort = test["segment"].to_numpy(), ids["cohort"].to_numpy()
    masks = {"all": np.ones(len(test), dtype=bool)}
    masks.update({s: seg == s for s in ("low", "mid", "high")})
    masks.update({c: cohort == c for c in ("sparse", "new")})
    return {g: m for g, m in masks.items() if m.any()}


def feeds(cfg, work: Path, test, ids, rank_scores: dict) -> dict:
    """{(model, seed, group): (uvc, udt_s)} of the simulated feed (evaluation/simulation.py)
    over the test window: per user, the top `evaluate.feed_size` test exposures."""
    from duia_spark.evaluation.simulation import simulate_feeds, with_ground_truth
    from duia_spark.session import build_spark_session

    spark = build_spark_session(cfg, "duia-regimes")
    cols = {f"m{i}": key for i, key in enumerate(rank_scores)}
    pdf = ids[["user_id", "item_id", "duration_ms"]].copy()
    for c, key in cols.items():
        pdf[c] = rank_scores[key].astype("float64")
    truth = work / "raw" / "truth"
    out = {}
    for name, groups in (("segment", test["segment"]), ("cohort", ids["cohort"])):
        frame = spark.createDataFrame(pdf.assign(segment=groups.to_numpy()))
        scored = with_ground_truth(
            frame,
            spark.read.parquet(str(truth / "users.parquet")),
            spark.read.parquet(str(truth / "items.parquet")),
        )
        rows = simulate_feeds(scored, {c: c for c in cols}, cfg.evaluate.feed_size).collect()
        for r in rows:  # (models + oracle) x groups
            if name == "cohort" and r["segment"] in ("all", "regular"):
                continue
            model = cols.get(r["model"], ("oracle", -1))
            out[(*model, r["segment"])] = (r["uvc"], r["udt_s"])
    return out


def cluster_health(test, ids, res_models: dict, label: str, seeds) -> dict:
    """Mean over seeds: AMI of the test users' level-1 clusters vs the planted groups
    (all users; low-active users), reach on low-active rows, aux AUC, memory metrics."""
    from duia_spark.contract import label_column
    from duia_spark.evaluation.auc import auc
    from duia_spark.evaluation.cluster_recovery import adjusted_mutual_information

    first = ~pd.Series(test["user_idx"].to_numpy()).duplicated().to_numpy()  # a row per user
    low = test["segment"].to_numpy() == "low"
    value, known = label_column("click")
    k = test[known].to_numpy() > 0
    y = (test[value].to_numpy() > 0).astype(int)
    rows = []
    for seed in seeds:
        m = res_models[(label, seed)]
        group = ids["group"].to_numpy()
        h = m["health"]
        rows.append({
            "ami": adjusted_mutual_information(group[first], m["parent"][first]),
            "ami_low": adjusted_mutual_information(group[first & low], m["parent"][first & low]),
            "reach_low": float(m["reached"][low].mean()),
            "aux_auc": auc(y[k], m["aux"][k]),
            "dead": h.get("user_dead_centres", float("nan")),
            "entropy": h.get("user_usage_entropy", float("nan")),
            "served": ",".join(h.get("served", [])) or ("none" if "served" in h else "n/a"),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    out = {
        c: float(df[c].mean())
        for c in ("ami", "ami_low", "reach_low", "aux_auc", "dead", "entropy")
    }
    out["served"] = "; ".join(df["served"])
    return out


def compare_cells(cell, res, feed, seeds, tasks) -> list[dict]:
    """One row per (model, task, group): the difference to `ple` of the same seeds."""
    from scipy import stats

    rows = []
    for label, _, _ in MODELS[1:]:
        for t in tasks:
            for g in SEGMENTS:
                if (t, g) not in res[("ple", seeds[0])]:
                    continue
                row = {"cell": cell, "model": label, "task": t, "segment": g,
                       "auc_oracle": res[("oracle", -1)][(t, g)][0],
                       "gauc_oracle": res[("oracle", -1)][(t, g)][1]}  # fmt: skip
                for metric, i in (("auc", 0), ("gauc", 1)):
                    a = np.array([res[("ple", s)][(t, g)][i] for s in seeds])
                    b = np.array([res[(label, s)][(t, g)][i] for s in seeds])
                    row[f"{metric}_ple"] = float(np.nanmean(a))
                    row[f"{metric}_delta"] = float(np.nanmean(b - a))
                    p = (
                        stats.ttest_rel(b, a).pvalue
                        if len(seeds) > 1 and np.any(b != a)
                        else float("nan")
                    )
                    row[f"{metric}_p_seeds"] = float(p)
                ua = pd.DataFrame([res[("ple", s)][(t, g)][2] for s in seeds]).mean()
                ub = pd.DataFrame([res[(label, s)][(t, g)][2] for s in seeds]).mean()
                both = ua.index.intersection(ub.index)
                d = (ub[both] - ua[both]).to_numpy()
                row["gauc_p_users"] = (
                    float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else float("nan")
                )
                rows.append(row)
        for g in SEGMENTS:
            base = [feed.get(("ple", s, g)) for s in seeds]
            mine = [feed.get((label, s, g)) for s in seeds]
            if any(v is None for v in base + mine):
                continue
            for i, name in ((0, "uvc"), (1, "udt")):
                a = np.array([v[i] for v in base])
                b = np.array([v[i] for v in mine])
                oracle = feed.get(("oracle", -1, g), (float("nan"),) * 2)[i]
                rows.append({"cell": cell, "model": label, "task": name, "segment": g,
                             f"{name}_ple": float(a.mean()), f"{name}_oracle": oracle,
                             f"{name}_rel": float(np.mean(b / a - 1)),
                             f"{name}_p_seeds": float(stats.ttest_rel(b, a).pvalue)
                             if len(seeds) > 1 and np.any(a != b) else float("nan")})  # fmt: skip
    return rows


# ------------------------------------------------------------------ report
def _p(x: float) -> str:
    return "–" if x != x else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def cell_section(cell, world, header, rows, health) -> list[str]:
    knobs = ", ".join(f"{k} {v}" for k, v in world.items())
    lines = [f"### {cell}", "", f"World: {knobs}.", "", header, ""]
    lines += [
        "Against `ple` of the same seed (Δ = model − ple; p over seeds, GAUC also over users):",
        "",
        "| model | task | segment | AUC truth | AUC ple | ΔAUC (p) | GAUC truth | GAUC ple | ΔGAUC (p seeds; p users) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "auc_delta" not in r:
            continue
        lines.append(
            f"| {r['model']} | {r['task']} | {r['segment']} | {r['auc_oracle']:.4f} | "
            f"{r['auc_ple']:.4f} | {r['auc_delta']:+.4f} ({_p(r['auc_p_seeds'])}) | "
            f"{r['gauc_oracle']:.4f} | {r['gauc_ple']:.4f} | "
            f"{r['gauc_delta']:+.4f} ({_p(r['gauc_p_seeds'])}; {_p(r['gauc_p_users'])}) |"
        )
    lines += ["", "Simulated feed (expected valid views UVC, dwell UDT per user; relative to `ple`):", "",
              "| model | segment | UVC truth | UVC ple | ΔUVC (p) | UDT truth, s | UDT ple, s | ΔUDT (p) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    feed = {(r["model"], r["segment"], r["task"]): r for r in rows if "auc_delta" not in r}
    for model, _, _ in MODELS[1:]:
        for g in SEGMENTS:
            u, d = feed.get((model, g, "uvc")), feed.get((model, g, "udt"))
            if u is None:
                continue
            lines.append(
                f"| {model} | {g} | {u['uvc_oracle']:.3f} | {u['uvc_ple']:.3f} | "
                f"{100 * u['uvc_rel']:+.1f} % ({_p(u['uvc_p_seeds'])}) | {d['udt_oracle']:.1f} | "
                f"{d['udt_ple']:.1f} | {100 * d['udt_rel']:+.1f} % "
                f"({_p(d['udt_p_seeds'])}) |"
            )
    lines += ["", "Memories (mean over seeds; AMI of the test users' level-1 clusters against "
              "the planted groups):", "",
              "| model | AMI all | AMI low | AMI, GHCA on the true interests | dead centres | "
              "usage entropy | low rows reached | aux AUC (click) | residual gate served |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for model, h in health.items():
        lines.append(
            f"| {model} | {h['ami']:.3f} | {h['ami_low']:.3f} | {h['ami_truth']:.3f} | {h['dead']:.1f} | "
            f"{h['entropy']:.3f} | {h['reach_low']:.2f} | {h['aux_auc']:.3f} | {h['served']} |"
        )
    return lines + [""]


def map_table(all_rows, all_health) -> list[str]:
    """The regime map: one line per cell and DUIA model, the goal's numbers."""

    def get(rows, model, task, seg, key):
        for r in rows:
            if r["model"] == model and r["task"] == task and r["segment"] == seg and key in r:
                return r
        return None

    lines = [
        "| cell | model | low click ΔGAUC (p users) | low long_view ΔGAUC (p users) | "
        "low ΔUVC (p) | sparse click ΔGAUC (p users) | high click ΔGAUC | AMI all / low (GHCA on truth) | gate served |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for cell, rows in all_rows.items():
        for model, _, _ in MODELS[1:]:
            cells = []
            for task, seg in (("click", "low"), ("long_view", "low")):
                r = get(rows, model, task, seg, "gauc_delta")
                cells.append(
                    "–"
                    if r is None
                    else f"{100 * r['gauc_delta']:+.2f} pt ({_p(r['gauc_p_users'])})"
                )
            u = get(rows, model, "uvc", "low", "uvc_rel")
            cells.append(
                "–" if u is None else f"{100 * u['uvc_rel']:+.1f} % ({_p(u['uvc_p_seeds'])})"
            )
            r = get(rows, model, "click", "sparse", "gauc_delta")
            cells.append(
                "–" if r is None else f"{100 * r['gauc_delta']:+.2f} pt ({_p(r['gauc_p_users'])})"
            )
            r = get(rows, model, "click", "high", "gauc_delta")
            cells.append("–" if r is None else f"{100 * r['gauc_delta']:+.2f} pt")
            h = all_health[cell][model]
            cells.append(f"{h['ami']:.2f} / {h['ami_low']:.2f} (truth {h['ami_truth']:.2f})")
            cells.append(h["served"] if model == "duia-residual" else "–")
            lines.append(f"| {cell} | {model} | " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------ driver
def run_cell(cell: str, args, seeds) -> tuple[list[str], list[dict], dict]:
    world = world_of(cell)
    work = Path(args.work_dir) / cell
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg, frames = prepare_world(cell, world, work)
    ids = test_ids(cfg, frames, work)
    test = rvt.test_frame(frames, TASKS)
    model_tasks = list(frames.model_cfg.tasks)
    rank_task = model_tasks.index(cfg.evaluate.simulation_rank_task)
    q.log(f"{cell}: world ready in {time.time() - t0:.0f}s ({len(test):,} test rows)")
    trained, scores, rank_scores = {}, {}, {}
    for seed in seeds:
        for label, variant, fusion in MODELS:
            t1 = time.time()
            m = train_model(frames, cfg, variant, fusion, seed, work)
            trained[(label, seed)] = m
            scores[(label, seed)] = {t: m["scores"][:, model_tasks.index(t)] for t in TASKS}
            rank_scores[(label, seed)] = m["scores"][:, rank_task]
            q.log(f"{cell}: {label} seed {seed} in {time.time() - t1:.0f}s "
                  f"(epoch {m['health']['kept_epoch']} of {m['health']['epochs']})")  # fmt: skip
    u_lat, i_lat = truth_latents(work, ids["user_id"], ids["item_id"])
    affinity = (u_lat * i_lat).sum(axis=1)  # every task's true probability rises with it
    scores[("oracle", -1)] = {t: affinity for t in TASKS}
    res = q.evaluate(test, TASKS, scores, group_masks(test, ids))
    feed = feeds(cfg, work, test, ids, rank_scores)
    rows = compare_cells(cell, res, feed, seeds, TASKS)
    health = {label: cluster_health(test, ids, trained, label, seeds) for label, _, _ in MODELS[1:]}
    ceiling = float(np.mean([ghca_on_truth(work, ids, frames.model_cfg, s) for s in seeds]))
    for h in health.values():
        h["ami_truth"] = ceiling
    hist = test.groupby("segment")["hist_len"].mean()
    cohorts = ids["cohort"].value_counts()
    header = (
        f"{len(frames.train['user_idx']):,} training rows; {len(test):,} test rows of "
        f"{test.user_idx.nunique():,} users; test history mean "
        + ", ".join(f"{s} {hist.get(s, float('nan')):.1f}" for s in ("low", "mid", "high"))
        + "; test rows per cohort "
        + ", ".join(f"{c} {cohorts.get(c, 0):,}" for c in ("regular", "sparse", "new"))
        + f"; {time.time() - t0:.0f} s."
    )
    return cell_section(cell, world, header, rows, health), rows, health


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="central,groups8,groups256,profile0.5,history5-10")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work-dir", default="/tmp/duia-regimes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP contention)")
    p.add_argument("--out", default="duia_regimes", help="results file stem under bench/results/")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = args.cells.split(",")
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise SystemExit(f"unknown cell(s) {unknown}; known: {', '.join(CELLS)}")
    t0 = time.time()
    sections, all_rows, all_health = [], {}, {}
    for cell in cells:
        lines, rows, health = run_cell(cell, args, seeds)
        sections += lines
        all_rows[cell], all_health[cell] = rows, health
    body = [
        "# DUIA's regimes: `ple` vs `ple+duia` on worlds built to the premise",
        "",
        f"{len(seeds)} seeds a cell; central cell: "
        + ", ".join(f"{k} {v}" for k, v in CENTRAL.items())
        + '; the other cells change one knob (docs/pipeline.md, "The synthetic generator").',
        "",
        "## The map",
        "",
        *map_table(all_rows, all_health),
        "",
        "## Cells",
        "",
        *sections,
        f"Total wall time {time.time() - t0:.0f} s.",
    ]
    flat = [r for rows in all_rows.values() for r in rows]
    write_result(RESULTS / f"{args.out}.md", "\n".join(body))
    pd.DataFrame(flat).to_csv(RESULTS / f"{args.out}.csv", index=False)
    q.log(f"wrote {RESULTS / args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
