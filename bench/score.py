"""Benchmark of batch scoring: Spark (`duia score`'s inference path) vs one in-process loop.

    python bench/score.py                 # writes bench/results/score.md and .csv
    python bench/score.py --rows 20000    # smaller, for a smoke test (nothing written)

The same ranker (the model conf/default.yaml ships: ple+duia, 6 tasks, its sizes,
L=50, its enhancement_fusion, with the generator's default vocabulary: 2 000 users,
500 items) scores the same rows of
gold.samples-shaped features twice:

- in-process: the rows already in a pandas frame, `score_frame` in one loop (torch
  uses every core);
- Spark: the rows read from Parquet by `local[N]`, scored by
  `duia_spark.scoring.inference.score_features` (model bytes broadcast, loaded once
  per Python worker, Arrow batches through mapInPandas, one torch thread per worker)
  and written to Spark's `noop` sink, so reading, Arrow conversion and the JVM <->
  Python hand-off are all counted. The first Spark run includes starting the Python
  workers and loading the model in each; the warm run is the steady state.

Goal: Spark warm rows/s >= 0.5 x in-process rows/s. Weights are untrained: the work
per row does not depend on their values.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duia_spark.config import load_config  # noqa: E402
from duia_spark.data.samples import USER_DENSE_FEATURES, item_dense_features  # noqa: E402
from duia_spark.model.config import ModelConfig  # noqa: E402
from duia_spark.model.ranker import build_ranker  # noqa: E402
from duia_spark.scoring.inference import ModelPayload, broadcast_model, score_features  # noqa: E402
from duia_spark.session import build_spark_session  # noqa: E402
from duia_spark.training.pyfunc import load_ranker, score_frame  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def bench_model_config(cfg) -> ModelConfig:
    """The shipped model (`cfg.model`, from load_config) sized to the generator's data."""
    g = cfg.generator
    return dataclasses.replace(
        cfg.model,
        n_users=g.users + 1,
        n_items=g.items + 1,
        n_categories=g.categories + 1,
        n_authors=g.authors + 1,
        n_user_dense=len(USER_DENSE_FEATURES),
        n_item_dense=len(item_dense_features(cfg.item_stats)),
        seq_len=cfg.sequences.exposures_len,
        pos_seq_len=cfg.sequences.positives_len,
    )


def save_model(model_cfg: ModelConfig, folder: Path) -> dict[str, Path]:
    model = build_ranker(model_cfg)
    files = {
        "weights": folder / "weights.pt",
        "cluster_memory": folder / "cluster_memory.safetensors",
        "model_config": folder / "model_config.json",
    }
    torch.save(model.state_dict(), files["weights"])
    model.save_memory(files["cluster_memory"])
    files["model_config"].write_text(json.dumps(model_cfg.to_dict()))
    return files


def feature_rows(model_cfg: ModelConfig, n: int, seed: int = 0) -> pd.DataFrame:
    """gold.samples-shaped model inputs; histories of uniform length 0..L."""
    rng = np.random.default_rng(seed)
    seq, pos = model_cfg.seq_len, model_cfg.pos_seq_len

    def padded(length: int, lens: np.ndarray) -> list[np.ndarray]:
        ids = rng.integers(1, model_cfg.n_items, (n, length)).astype(np.int32)
        ids[np.arange(length)[None, :] >= lens[:, None]] = 0
        return list(ids)

    return pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in rng.integers(1, model_cfg.n_users, n)],
            "item_id": [f"v{k}" for k in rng.integers(1, model_cfg.n_items, n)],
            "user_idx": rng.integers(1, model_cfg.n_users, n).astype(np.int32),
            "item_idx": rng.integers(1, model_cfg.n_items, n).astype(np.int32),
            "category_idx": rng.integers(1, model_cfg.n_categories, n).astype(np.int32),
            "author_idx": rng.integers(1, model_cfg.n_authors, n).astype(np.int32),
            "segment_idx": rng.integers(0, 3, n).astype(np.int32),
            "user_dense": list(rng.random((n, model_cfg.n_user_dense), dtype=np.float32)),
            "item_dense": list(rng.random((n, model_cfg.n_item_dense), dtype=np.float32)),
            "hist_items": padded(seq, rng.integers(0, seq + 1, n)),
            "pos_items": padded(pos, rng.integers(0, pos + 1, n)),
        }
    )


def time_in_process(files: dict[str, Path], frame: pd.DataFrame, batch: int) -> dict:
    model = load_ranker(*[str(files[k]) for k in ("weights", "cluster_memory", "model_config")])
    score_frame(model, frame.iloc[:batch], batch)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    scores = score_frame(model, frame, batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(scores) == len(frame)
    return {"wall_s": wall, "cpu_s": cpu}


def time_spark(spark, payload, tasks, parquet: str, batch: int) -> float:
    model = broadcast_model(spark, payload)
    scored = score_features(spark.read.parquet(parquet), model, tasks, batch)
    t0 = time.perf_counter()
    scored.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--batch", type=int, default=4096, help="rows per model call (score.batch_size)"
    )
    args = ap.parse_args()
    write = args.rows >= 100_000

    cfg = load_config(
        overrides=[
            f"spark.master=local[{args.cores}]",
            f"spark.shuffle_partitions={args.cores}",
            "spark.log_level=ERROR",
            "spark.extra={spark.ui.enabled: 'false'}",
        ]
    )
    model_cfg = bench_model_config(cfg)
    print(
        f"scoring benchmark: {model_cfg.variant}, enhancement_fusion "
        f"{model_cfg.enhancement_fusion} (conf/default.yaml)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="duia-bench-score-") as tmp:
        folder = Path(tmp)
        files = save_model(model_cfg, folder)
        frame = feature_rows(model_cfg, args.rows)
        parquet = str(folder / "rows.parquet")
        spark = build_spark_session(cfg, "duia-bench-score")
        # One file per core, so every Spark task has rows to score.
        spark.createDataFrame(frame).repartition(args.cores).write.parquet(parquet)
        payload = ModelPayload.from_files("bench", "0", files, threads=1)

        load0 = os.getloadavg()[0]
        spark_cold = time_spark(spark, payload, model_cfg.tasks, parquet, args.batch)
        spark_warm = time_spark(spark, payload, model_cfg.tasks, parquet, args.batch)
        local = time_in_process(files, frame, args.batch)
        load1 = os.getloadavg()[0]
        spark.stop()

    n = args.rows
    rate_local = n / local["wall_s"]
    rows = [
        ("in-process score_frame (1 loop)", local["wall_s"], n / local["wall_s"], 1.0),
        (
            "Spark mapInPandas, cold (1st run)",
            spark_cold,
            n / spark_cold,
            n / spark_cold / rate_local,
        ),
        ("Spark mapInPandas, warm", spark_warm, n / spark_warm, n / spark_warm / rate_local),
    ]
    ratio = rows[2][3]
    header = (
        "| method | rows | wall s | rows/s | vs in-process |\n| --- | ---: | ---: | ---: | ---: |"
    )
    lines = [f"| {m} | {n:,d} | {s:.2f} | {r:,.0f} | {x:.2f} |" for m, s, r, x in rows]
    table = "\n".join([header, *lines])
    verdict = "met" if ratio >= 0.5 else "NOT met"
    report = f"""# Batch scoring: Spark vs in-process

Command: `python bench/score.py --rows {n} --cores {args.cores}` ({platform.processor() or platform.machine()},
{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads
in-process, 1 per Spark Python worker, local[{args.cores}], {args.batch} rows per model call).
Model: {model_cfg.variant} ({model_cfg.enhancement_fusion} fusion), tasks {model_cfg.tasks}, K1={model_cfg.k1} x K2={model_cfg.k2},
L={model_cfg.seq_len}, {model_cfg.n_users - 1:,d} users, {model_cfg.n_items - 1:,d} items.
Load average (1 min) {load0:.1f} before, {load1:.1f} after — the machine is shared, so
wall times carry noise from other processes. In-process CPU time: {local["cpu_s"]:.1f} s.

{table}

Goal: Spark warm >= 0.5 x in-process rows/s — **{verdict}** ({ratio:.2f}).
"""
    print(report)
    if not write:
        print("(fewer than 100 000 rows: a smoke test, nothing written)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / "score.md", report)
    with (RESULTS / "score.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "rows", "wall_s", "rows_per_s", "vs_in_process"])
        for m, s, r, x in rows:
            w.writerow([m, n, f"{s:.3f}", f"{r:.1f}", f"{x:.3f}"])


if __name__ == "__main__":
    main()
