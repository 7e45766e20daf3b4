"""Training data-path benchmark: samples/s of one epoch through Petastorm + DataLoader vs
the same model on the same rows already in memory as tensors (the ceiling); 1 vs 2
processes (TorchDistributor, gloo). Beside them, torch-rechub's PLE
(`torch_rechub.models.multi_task.PLE`) trained in-process on the same rows, at the same
embedding width, PLE levels, experts, hidden sizes, tasks and batch. Prints a table and
writes bench/results/train.md.

    python bench/train.py [--rows 60000] [--batch 1024] [--models small,shipped]
        [--results-name train]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_lake import make_samples, small_model_overrides  # noqa: E402

from duia_spark.config import load_config  # noqa: E402
from duia_spark.contract import pandas_to_columns, to_batch  # noqa: E402
from duia_spark.data.samples import samples_schema  # noqa: E402
from duia_spark.lakehouse import Lakehouse  # noqa: E402
from duia_spark.model.ranker import build_ranker  # noqa: E402
from duia_spark.session import build_spark_session  # noqa: E402
from duia_spark.stages.train import model_config_for_data  # noqa: E402
from duia_spark.training.dataset import select_training_columns  # noqa: E402
from duia_spark.training.loop import TrainJob, _WithLoss, train_rank  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def in_memory_epoch(model_cfg, train_cfg, pdf) -> float:
    """Samples/s of one epoch over pre-built tensors (no data path at all)."""
    torch.manual_seed(model_cfg.seed)
    model = build_ranker(model_cfg)
    step = _WithLoss(model)
    opt = model.build_optimizer(train_cfg.lr)
    cols = pandas_to_columns(pdf)
    n, b = len(pdf), train_cfg.batch_size
    batches = [
        to_batch({k: v[i : i + b] for k, v in cols.items()}, cfg=model_cfg)
        for i in range(0, n - b + 1, b)
    ]
    t0 = time.perf_counter()
    for batch in batches:
        loss, _ = step(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(batches) * b / (time.perf_counter() - t0)


def rechub_epoch(model_cfg, train_cfg, pdf) -> float | None:
    """Samples/s of one epoch of torch-rechub's PLE over the same rows as pre-built
    tensors, in-process; None when torch-rechub is not installed (`make bench-setup`)."""
    try:
        from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
        from torch_rechub.models.multi_task import PLE as RechubPLE
    except ImportError as e:
        print(f"torch-rechub's PLE skipped: {e}")
        return None
    mc, e = model_cfg, model_cfg.embedding_dim
    cols = pandas_to_columns(pdf)

    def ids(name: str, n: int) -> torch.Tensor:
        return torch.as_tensor(cols[name]).long().clamp(0, n - 1)

    side = list(mc.side_cat_buckets)
    x = {
        "user_idx": ids("user_idx", mc.n_users),
        "item_idx": ids("item_idx", mc.n_items),
        "category_idx": ids("category_idx", mc.n_categories),
        "hist_items": ids("hist_items", mc.n_items),
        "user_dense": torch.as_tensor(cols["user_dense"], dtype=torch.float32),
        "item_dense": torch.as_tensor(cols["item_dense"], dtype=torch.float32),
        **{f"side_{i}": ids("side_cat", n)[:, i] for i, n in enumerate(side)},
    }
    y = (torch.as_tensor(cols["labels"]) > 0).float()  # [N, tasks]
    known = torch.as_tensor(cols["labels_known"], dtype=torch.float32)
    torch.manual_seed(mc.seed)
    model = RechubPLE(
        [
            SparseFeature("user_idx", mc.n_users, e),
            SparseFeature("item_idx", mc.n_items, e),
            SparseFeature("category_idx", mc.n_categories, e),
            SequenceFeature("hist_items", mc.n_items, e, pooling="mean", shared_with="item_idx", padding_idx=0),
            *[SparseFeature(f"side_{i}", n, e) for i, n in enumerate(side)],
            DenseFeature("user_dense", embed_dim=mc.n_user_dense),
            DenseFeature("item_dense", embed_dim=mc.n_item_dense),
        ],
        ["classification"] * len(mc.tasks),
        n_level=mc.ple_levels,
        n_expert_specific=mc.experts_per_task,
        n_expert_shared=mc.shared_experts,
        expert_params={"dims": [mc.expert_hidden]},
        tower_params_list=[{"dims": [mc.tower_hidden]}] * len(mc.tasks),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    model.train()
    n, b = len(pdf), train_cfg.batch_size
    starts = range(0, n - b + 1, b)
    t0 = time.perf_counter()
    for i in starts:
        p = model({k: v[i : i + b] for k, v in x.items()}).clamp(1e-6, 1 - 1e-6)
        loss = torch.nn.functional.binary_cross_entropy(p, y[i : i + b], weight=known[i : i + b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(starts) * b / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument(
        "--models", default="small,shipped", help="model sizes to run: small and/or shipped"
    )
    p.add_argument(
        "--results-name",
        default="train",
        help="writes bench/results/<name>.md and .csv (a reduced run: another name)",
    )
    a = p.parse_args()
    sizes = [m for m in a.models.split(",") if m]
    if not sizes or set(sizes) - {"small", "shipped"}:
        p.error(f"--models: small and/or shipped, got {a.models!r}")
    tmp = Path(tempfile.mkdtemp(prefix="duia-bench-train-"))
    cfg = load_config(
        overrides=[
            f"lakehouse.root={tmp / 'lake'}",
            f"train.petastorm_cache_dir={tmp / 'ps'}",
            f"train.checkpoint_dir={tmp / 'ck'}",
            "spark.log_level=ERROR",
            *small_model_overrides(),
            f"train.batch_size={a.batch}",
            "train.epochs=1",
        ]
    )
    spark = build_spark_session(cfg, "duia-bench-train")
    lake = Lakehouse(spark, cfg)
    from tiny_lake import write_tiny_lakehouse  # noqa: E402

    write_tiny_lakehouse(spark, lake, cfg)  # vocabulary; samples replaced below
    pdf = make_samples(cfg, rows_per_day=a.rows // 4)
    schema = samples_schema()
    df = spark.createDataFrame(pdf[schema.names], schema)
    days = sorted(set(pdf["sample_date"]))
    lake.replace_partitions(df, "samples", "sample_date", days)
    model_cfg = model_config_for_data(cfg, lake)
    samples = lake.read("samples")
    train_pdf = select_training_columns(samples, model_cfg).toPandas()
    rows = []

    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from pyspark.ml.torch.distributor import TorchDistributor

    # The same rows through a tiny model (the data path dominates) and through the
    # model at the sizes conf/default.yaml ships (what a nightly run trains).
    defaults = load_config().model
    sized = [o.split("=")[0].removeprefix("model.") for o in small_model_overrides()]
    shipped = dataclasses.replace(
        model_cfg,
        **{k: getattr(defaults, k) for k in sized if k != "tasks" and hasattr(defaults, k)},
    )
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, (tmp / "ps").as_uri())
    conv = make_spark_converter(select_training_columns(samples, model_cfg).repartition(8))
    val = make_spark_converter(select_training_columns(samples.limit(256), model_cfg).coalesce(1))
    ceilings, rechub = {}, {}
    variant = model_cfg.variant
    print(
        f"training benchmark: {variant}, enhancement_fusion {model_cfg.enhancement_fusion} "
        "(conf/default.yaml)",
        flush=True,
    )
    try:
        for size, mcfg in (("small", model_cfg), ("shipped", shipped)):
            if size not in sizes:
                continue
            mem = in_memory_epoch(mcfg, cfg.train, train_pdf)
            ceilings[size] = mem
            rows.append((size, f"{variant}: in-memory tensors (ceiling)", 1, mem))
            theirs = rechub_epoch(mcfg, cfg.train, train_pdf)
            if theirs is not None:
                rechub[size] = theirs
                label = (
                    f"torch-rechub {version('torch-rechub')} PLE: in-memory tensors (in-process)"
                )
                rows.append((size, label, 1, theirs))
            for procs in (1, 2):
                out = tmp / f"out-{size}-{procs}"
                job = TrainJob(
                    mcfg,
                    dataclasses.replace(cfg.train, num_processes=procs),
                    conv,
                    val,
                    len(train_pdf),
                    256,
                    str(out),
                    str(tmp / f"ck-{size}-{procs}"),
                )
                if procs == 1:
                    train_rank(job)
                else:
                    TorchDistributor(num_processes=procs, local_mode=True, use_gpu=False).run(
                        train_rank, job
                    )
                hist = json.loads((out / "history.json").read_text())["history"]
                path = (
                    "Petastorm → DataLoader (in-process)"
                    if procs == 1
                    else "Delta → Petastorm → TorchDistributor (the product path)"
                )
                rows.append((size, f"{variant}: {path}", procs, hist[0]["samples_per_s"]))
    finally:
        conv.delete()
        val.delete()
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    header = "| model | path | processes | samples/s | vs in-memory |\n|---|---|---:|---:|---:|"
    lines = [header] + [
        f"| {m} | {n} | {p} | {s:,.0f} | {s / ceilings[m]:.2f} |" for m, n, p, s in rows
    ]
    for size, theirs in rechub.items():
        ours = next(s for m, n, p, s in rows if m == size and p == 2)
        lines.append(
            f"\n{size}: full {variant} through the product path (Delta → Petastorm → "
            f"TorchDistributor, 2 processes, batch {a.batch}) ran {ours:,.0f} samples/s = "
            f"{ours / theirs:.2f}x torch-rechub's PLE trained in-process on the same rows and "
            f"shapes ({theirs:,.0f} samples/s)."
        )
    note = (
        f"\n{len(train_pdf):,} rows, batch {a.batch}, CPU, torch {torch.__version__}, {dt.date.today()}. "
        f"small: {', '.join(small_model_overrides()[:4])}, ... (the data path dominates); "
        f"shipped: the model sizes of conf/default.yaml (embedding {model_cfg.embedding_dim}, "
        f"experts {model_cfg.expert_hidden}, towers {model_cfg.tower_hidden}, dropout "
        f"{model_cfg.dropout:g}, K1={model_cfg.k1}, K2={model_cfg.k2}, ...). "
        f"Both with enhancement_fusion {model_cfg.enhancement_fusion} (conf/default.yaml). "
        "Goal: Petastorm path >= 0.8 of in-memory. The 2-process row is the aggregate of two "
        "ranks against the 1-process ceiling. torch-rechub's PLE: the same ids, history "
        "(mean-pooled, sharing the item table), dense features, embedding width, PLE levels, "
        "experts, hidden sizes and tasks (BCE on the known labels), one epoch over the same "
        "rows as pre-built tensors; it has no DUIA memories, so it sets the pace of a plain "
        "PLE, not a ceiling of ours.\n"
        f"Command: `python bench/train.py --rows {a.rows} --batch {a.batch} --models {a.models}` "
        "(`make bench-train`).\n"
    )
    table = "\n".join(lines) + "\n" + note
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / f"{a.results_name}.md", "# Training data path\n\n" + table)
    (RESULTS / f"{a.results_name}.csv").write_text(
        "model,path,processes,samples_per_s\n"
        + "".join(f'{m},"{n}",{p},{s:.1f}\n' for m, n, p, s in rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
