"""Benchmark of the model package on CPU.

    python bench/model.py            # full run, writes bench/results/model.md and .csv
    python bench/model.py --quick    # fewer steps, for a smoke test
    python bench/model.py --quick --device cuda   # the same on a GPU (bench/gpu_check.sh)

Three measurements, each against a goal:
1. Forward + loss + backward step at batch 1024 for PLE and every DUIA variant:
   median step time (wall clock and process CPU time) and peak resident memory.
   Goal: full DUIA (ple+duia) <= 1.3x PLE.
2. GHCA retrieval of the top-1 centre for 1024 queries, hierarchical (K1 + K2
   comparisons) vs flat (K1 * K2) at 512x10 = 5 120 and at 5 120x10 and 512x100 =
   51 200 centres. Goal: hierarchical >= 5x faster than flat at 51 200.
3. Our PLE block vs torch-rechub's `torch_rechub.models.multi_task.PLE` with the same
   tasks, levels, experts, hidden sizes and input width. Goal: ours is faster.

Step times come from rounds of fresh processes in which all variants take turns on
the same batches, so each ratio compares steps taken a fraction of a second apart;
peak memory comes from one process per variant, so that it is the variant's own.
CPU time is reported next to wall time because the machine may be shared: CPU time
is far less sensitive to other processes than wall time.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from provenance import write_result  # noqa: E402  (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duia_spark.config import load_config  # noqa: E402
from duia_spark.model.config import VARIANTS, ModelConfig  # noqa: E402
from duia_spark.model.deferred_init import peak_resident_bytes, reset_peak_resident  # noqa: E402
from duia_spark.model.ghca import ClusterMemory  # noqa: E402
from duia_spark.model.layers import normalise  # noqa: E402
from duia_spark.model.ple import PLE  # noqa: E402
from duia_spark.model.ranker import build_ranker  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BATCH = 1024
DEVICE = torch.device("cpu")  # --device; workers get the same flag


def _sync() -> None:
    """Wait for queued GPU work, so a timer measures the step and not its launch."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@functools.cache
def shipped_model() -> ModelConfig:
    """The model conf/default.yaml ships (its sizes, K1, K2, memory width, tasks, L, dropout
    and enhancement_fusion), as the nightly trains it."""
    return load_config().model


def _sizes(m: ModelConfig) -> str:
    return (
        f"embedding {m.embedding_dim}, experts {m.expert_hidden}, towers {m.tower_hidden}, "
        f"dropout {m.dropout:g}, K1={m.k1}, K2={m.k2}, memory d={m.memory_dim}, item memory "
        f"{m.item_k1}x{m.item_k2}, {len(m.tasks)} tasks, L={m.seq_len}, P={m.pos_seq_len}, "
        f"enhancement_fusion {m.enhancement_fusion}"
    )


def bench_config(variant: str) -> ModelConfig:
    """The shipped model as `variant`, with 100k users and items."""
    return dataclasses.replace(shipped_model(), variant=variant, n_users=100_000, n_items=100_000)


def random_batch(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """A batch following the loader's contract; histories of uniform length 0..L."""
    g = torch.Generator().manual_seed(seed)
    seq, pos = cfg.seq_len, cfg.pos_seq_len
    hist_mask = torch.arange(seq) < torch.randint(0, seq + 1, (BATCH, 1), generator=g)
    pos_mask = torch.arange(pos) < torch.randint(0, pos + 1, (BATCH, 1), generator=g)
    batch = {
        "user_idx": torch.randint(1, cfg.n_users, (BATCH,), generator=g),
        "item_idx": torch.randint(1, cfg.n_items, (BATCH,), generator=g),
        "category_idx": torch.randint(1, cfg.n_categories, (BATCH,), generator=g),
        "author_idx": torch.randint(1, cfg.n_authors, (BATCH,), generator=g),
        "user_dense": torch.randn(BATCH, cfg.n_user_dense, generator=g),
        "item_dense": torch.randn(BATCH, cfg.n_item_dense, generator=g),
        "segment": torch.randint(0, 3, (BATCH,), generator=g),
        "hist_items": torch.randint(1, cfg.n_items, (BATCH, seq), generator=g) * hist_mask,
        "hist_mask": hist_mask,
        "pos_items": torch.randint(1, cfg.n_items, (BATCH, pos), generator=g) * pos_mask,
        "pos_mask": pos_mask,
        "labels": (torch.rand(BATCH, len(cfg.tasks), generator=g) < 0.3).float(),
    }
    return {k: v.to(DEVICE) for k, v in batch.items()}


def timed(fn, steps: int, warmup: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of fn() over `steps` calls after `warmup`."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


# ---------------------------------------------------------------------- 1. step time
def memory_worker(variant: str, steps: int) -> dict:
    """Peak resident memory of `steps` training steps of one variant, alone in a process."""
    cfg = bench_config(variant)
    model = build_ranker(cfg, DEVICE)
    model.train()
    batches = [random_batch(cfg, seed) for seed in range(steps + 1)]
    train_step(model, batches[0])  # first step allocates gradients and seeds the memories
    before = peak_resident_bytes()
    reset_peak_resident()
    for batch in batches[1:]:
        train_step(model, batch)
    return {
        "variant": variant,
        "peak_rss_mb": peak_resident_bytes() / 2**20,
        "rss_before_steps_mb": before / 2**20,
        "ple_input_dim": model.ple_input_dim,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def train_step(model, batch: dict[str, torch.Tensor]) -> None:
    # As the trainer does: gradients are dropped, not zeroed in place, between steps.
    model.zero_grad(set_to_none=True)
    total, _ = model.loss(batch, model(batch))
    total.backward()


def paired_worker(steps: int, warmup: int) -> dict:
    """Every variant in one process, stepping in turn on the same batches (the order
    rotates every step). A variant's step is compared with PLE's step on the same batch a
    fraction of a second apart, so a shared machine's drift cancels out of the ratio."""
    models = {}
    for variant in VARIANTS:
        models[variant] = build_ranker(bench_config(variant), DEVICE)
        models[variant].train()
    # Fresh batches every step: the UHSE item-centre cache meets new items as it would.
    batches = [random_batch(bench_config("ple"), seed) for seed in range(steps + warmup)]
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i, batch in enumerate(batches):
        order = VARIANTS[i % len(VARIANTS) :] + VARIANTS[: i % len(VARIANTS)]
        for variant in order:
            t, c = time.perf_counter(), time.process_time()
            train_step(models[variant], batch)
            _sync()
            if i >= warmup:
                wall[variant].append((time.perf_counter() - t) * 1e3)
                cpu[variant].append((time.process_time() - c) * 1e3)
    out = {}
    for v in VARIANTS:
        out[v] = {
            "wall_ms": statistics.median(wall[v]),
            "cpu_ms": statistics.median(cpu[v]),
            "cpu_ratio": statistics.median(a / b for a, b in zip(cpu[v], cpu["ple"], strict=False)),
            "wall_ratio": statistics.median(
                a / b for a, b in zip(wall[v], wall["ple"], strict=False)
            ),
        }
    return out


def _subprocess_json(*argv: str) -> dict:
    cmd = [sys.executable, __file__, *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_step_benchmarks(steps: int, warmup: int, threads: int, rounds: int) -> list[dict]:
    """`rounds` fresh processes of `paired_worker`; reported: the median over rounds of
    each round's median per-step ratio to PLE (and its range), and median step times.
    Peak memory comes from one process per variant, so that it is the variant's own."""
    per_round = []
    for rnd in range(rounds):
        got = _subprocess_json(
            "--paired-worker", "--steps", str(steps), "--warmup", str(warmup),
            "--threads", str(threads), "--device", str(DEVICE),
        )  # fmt: skip
        per_round.append(got)
        ratios = ", ".join(f"{v} {got[v]['cpu_ratio']:.2f}x" for v in VARIANTS if v != "ple")
        print(f"  round {rnd + 1}/{rounds}: {ratios}", flush=True)
    rows = []
    for variant in VARIANTS:
        runs = [r[variant] for r in per_round]
        row = _subprocess_json(
            "--memory-worker", variant, "--threads", str(threads), "--device", str(DEVICE)
        )
        row.update(
            wall_ms=statistics.median(x["wall_ms"] for x in runs),
            cpu_ms=statistics.median(x["cpu_ms"] for x in runs),
            cpu_ratio=statistics.median(x["cpu_ratio"] for x in runs),
            cpu_ratio_min=min(x["cpu_ratio"] for x in runs),
            cpu_ratio_max=max(x["cpu_ratio"] for x in runs),
            wall_ratio=statistics.median(x["wall_ratio"] for x in runs),
        )
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- 2. retrieval
def run_retrieval_benchmarks(repeats: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    q = normalise(torch.randn(BATCH, 64, generator=g)).to(DEVICE)
    for k1, k2 in [(512, 10), (5120, 10), (512, 100)]:
        row = {"k1": k1, "k2": k2, "centres": k1 * k2}
        for hierarchical in (True, False):
            memory = ClusterMemory(k1, k2, 64, hierarchical=hierarchical, seed=0).to(DEVICE)
            wall, cpu = timed(lambda m=memory: m.retrieve(q, top_k=1), repeats, 2)
            key = "hier" if hierarchical else "flat"
            row[f"{key}_ms"] = wall
            row[f"{key}_cpu_ms"] = cpu
            row[f"{key}_comparisons"] = memory.retrieve(q[:1]).comparisons
        row["speedup"] = row["flat_ms"] / row["hier_ms"]
        row["speedup_cpu"] = row["flat_cpu_ms"] / row["hier_cpu_ms"]
        rows.append(row)
        print(f"  retrieval {k1}x{k2}: {row['speedup']:.1f}x", flush=True)
    return rows


# ---------------------------------------------------------------------- 3. PLE vs torch-rechub
def run_ple_comparison(steps: int, warmup: int) -> list[dict]:
    cfg = bench_config("ple")
    in_dim = build_ranker(cfg).ple_input_dim
    n_tasks = len(cfg.tasks)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, in_dim, generator=g).to(DEVICE)
    y = (torch.rand(BATCH, n_tasks, generator=g) < 0.3).float().to(DEVICE)
    rows = []

    ours = PLE(
        in_dim,
        n_tasks,
        cfg.ple_levels,
        cfg.experts_per_task,
        cfg.shared_experts,
        cfg.expert_hidden,
        cfg.tower_hidden,
        cfg.dropout,  # as shipped: training steps drop units
    ).to(DEVICE)

    def ours_step() -> None:
        ours.zero_grad(set_to_none=True)
        torch.nn.functional.binary_cross_entropy_with_logits(ours(x), y).backward()

    wall, cpu = timed(ours_step, steps, warmup)
    params = sum(p.numel() for p in ours.parameters())
    rows.append({"model": "duia_spark PLE", "wall_ms": wall, "cpu_ms": cpu, "params": params})

    try:
        from torch_rechub.basic.features import DenseFeature
        from torch_rechub.models.multi_task import PLE as RechubPLE
    except ImportError as e:  # the bench extra is optional
        rows.append({"model": f"torch-rechub PLE (not installed: {e})"})
        return rows
    theirs = RechubPLE(
        [DenseFeature("x", embed_dim=in_dim)],
        ["classification"] * n_tasks,
        n_level=cfg.ple_levels,
        n_expert_specific=cfg.experts_per_task,
        n_expert_shared=cfg.shared_experts,
        expert_params={"dims": [cfg.expert_hidden]},
        tower_params_list=[{"dims": [cfg.tower_hidden]}] * n_tasks,
    ).to(DEVICE)
    feed = {"x": x}

    def theirs_step() -> None:
        theirs.zero_grad(set_to_none=True)
        # torch-rechub's PLE returns probabilities.
        torch.nn.functional.binary_cross_entropy(theirs(feed), y).backward()

    wall, cpu = timed(theirs_step, steps, warmup)
    params = sum(p.numel() for p in theirs.parameters())
    rows.append(
        {"model": "torch-rechub 0.9.0 PLE", "wall_ms": wall, "cpu_ms": cpu, "params": params}
    )
    return rows


# ---------------------------------------------------------------------- report
def write_report(steps_rows, retrieval_rows, ple_rows, args) -> str:
    ple = next(r for r in steps_rows if r["variant"] == "ple")
    duia = next(r for r in steps_rows if r["variant"] == "ple+duia")
    lines = [
        "# Model benchmark",
        "",
        f"`python bench/model.py` — {time.strftime('%Y-%m-%d %H:%M')} — "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, device {DEVICE}, {args.threads} intra-op thread(s), "
        f"load average before the run {args.load:.1f}.",
        "",
        f"## 1. Forward + loss + backward at batch {BATCH} (median of {args.steps} steps, "
        f"{args.rounds} rounds)",
        "",
        f"The model `conf/default.yaml` ships ({_sizes(shipped_model())}), 100k "
        "users and items, a fresh random batch every step. Each "
        "round is a fresh process in which all variants take turns on the same batches; "
        "`x PLE` is the median over rounds of the round's median ratio of a variant's step "
        "to PLE's step on the same batch (range over rounds in brackets); ms columns are "
        "medians over rounds. Peak RSS: each variant alone in its own process. Gradients "
        "are set to None between steps, as the trainer does.",
        "",
        "| variant | wall ms | x PLE | CPU ms | x PLE (CPU) | peak RSS MB | PLE input | params (M) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in steps_rows:
        lines.append(
            f"| {r['variant']} | {r['wall_ms']:.1f} | {r['wall_ratio']:.2f} | "
            f"{r['cpu_ms']:.1f} | {r['cpu_ratio']:.2f} [{r['cpu_ratio_min']:.2f}–{r['cpu_ratio_max']:.2f}] | "
            f"{r['peak_rss_mb']:.0f} | {r['ple_input_dim']} | {r['params_m']:.2f} |"
        )
    ratio_cpu = duia["cpu_ratio"]
    verdict = "met" if ratio_cpu <= 1.3 else "**missed**"
    uie = next(r for r in steps_rows if r["variant"] == "ple+uie")
    upbe = next(r for r in steps_rows if r["variant"] == "ple+uie+upbe")
    lines += [
        "",
        f"Goal: full DUIA <= 1.3x PLE — {verdict} (median {ratio_cpu:.2f}x CPU time over "
        f"{args.rounds} rounds, range {duia['cpu_ratio_min']:.2f}–{duia['cpu_ratio_max']:.2f}x). "
        f"Median added CPU time per part: UIE {uie['cpu_ms'] - ple['cpu_ms']:+.1f} ms, "
        f"UPBE {upbe['cpu_ms'] - uie['cpu_ms']:+.1f} ms, UHSE {duia['cpu_ms'] - upbe['cpu_ms']:+.1f} ms.",
        "",
        "Goals are judged on process CPU time: with the load average above the CPU count, "
        "wall time mostly measures waiting for a core and is shown for reference only.",
        "",
        f"## 2. GHCA retrieval, {BATCH} queries, d=64, top-1 (median of {args.repeats} runs)",
        "",
        "| K1 x K2 | centres | hierarchical ms | flat ms | speedup (wall) | speedup (CPU) "
        "| comparisons hier / flat |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in retrieval_rows:
        lines.append(
            f"| {r['k1']} x {r['k2']} | {r['centres']} | {r['hier_ms']:.2f} | {r['flat_ms']:.2f} | "
            f"{r['speedup']:.1f}x | {r['speedup_cpu']:.1f}x | "
            f"{r['hier_comparisons']} / {r['flat_comparisons']} |"
        )
    m = shipped_model()
    at_51200 = [r for r in retrieval_rows if r["centres"] == 51200]
    worst = min(r["speedup_cpu"] for r in at_51200)
    verdict = "met" if worst >= 5 else "**missed**"
    lines += [
        "",
        f"Goal: hierarchical >= 5x faster than flat at 51 200 centres — {verdict} "
        f"(CPU time, worse of the two layouts: {worst:.1f}x).",
        "",
        f"## 3. PLE block alone: ours vs torch-rechub (batch {BATCH}, median of "
        f"{args.steps * 2} steps)",
        "",
        f"Same input width, {len(m.tasks)} tasks, {m.ple_levels} levels, {m.experts_per_task} "
        f"expert per task, {m.shared_experts} shared experts, expert hidden {m.expert_hidden}, "
        f"tower hidden {m.tower_hidden}; BCE loss, forward + backward. Ours drops "
        f"{m.dropout:g} of the experts' and towers' hidden units (as shipped); torch-rechub's "
        "MLP puts BatchNorm after every linear layer (not switchable), ours has none inside PLE.",
        "",
        "| model | wall ms | CPU ms | parameters |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in ple_rows:
        if "wall_ms" in r:
            lines.append(
                f"| {r['model']} | {r['wall_ms']:.2f} | {r['cpu_ms']:.2f} | {r['params']} |"
            )
        else:
            lines.append(f"| {r['model']} | - | - | - |")
    if len(ple_rows) == 2 and "wall_ms" in ple_rows[1]:
        ours, theirs = ple_rows
        faster = ours["cpu_ms"] < theirs["cpu_ms"]
        lines += [
            "",
            f"Goal: our PLE faster than torch-rechub's — {'met' if faster else '**missed**'} "
            f"(theirs takes {theirs['cpu_ms'] / ours['cpu_ms']:.2f}x our CPU time, "
            f"{theirs['wall_ms'] / ours['wall_ms']:.2f}x our wall time).",
        ]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, steps_rows, retrieval_rows, ple_rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "name", "metric", "value"])
        for r in steps_rows:
            for k in (
                "wall_ms",
                "cpu_ms",
                "cpu_ratio",
                "cpu_ratio_min",
                "cpu_ratio_max",
                "peak_rss_mb",
                "ple_input_dim",
                "params_m",
            ):
                w.writerow(["step", r["variant"], k, f"{r[k]:.4g}"])
        for r in retrieval_rows:
            for k in ("hier_ms", "flat_ms", "speedup", "speedup_cpu"):
                w.writerow(["retrieval", f"{r['k1']}x{r['k2']}", k, f"{r[k]:.4g}"])
        for r in ple_rows:
            for k in ("wall_ms", "cpu_ms", "params"):
                if k in r:
                    w.writerow(["ple_vs_rechub", r["model"], k, f"{r[k]:.4g}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps; smoke test only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--rounds", type=int, default=5, help="step-time rounds (median ratio reported)"
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of the models and batches: cpu, cuda"
    )
    parser.add_argument("--paired-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.paired_worker:
        print(json.dumps(paired_worker(args.steps, args.warmup)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, steps=3)))
        return
    if args.quick:
        args.steps, args.warmup, args.repeats, args.rounds = 3, 2, 2, 1
    args.load = os.getloadavg()[0]
    print(
        f"model benchmark: {args.threads} thread(s), load average {args.load:.1f}, "
        f"enhancement_fusion {shipped_model().enhancement_fusion} (conf/default.yaml)"
    )
    steps_rows = run_step_benchmarks(args.steps, args.warmup, args.threads, args.rounds)
    retrieval_rows = run_retrieval_benchmarks(args.repeats)
    ple_rows = run_ple_comparison(args.steps * 2, args.warmup)
    report = write_report(steps_rows, retrieval_rows, ple_rows, args)
    print(report)
    if args.quick:
        return  # a smoke test's numbers are not results
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_result(RESULTS / "model.md", report)
    write_csv(RESULTS / "model.csv", steps_rows, retrieval_rows, ple_rows)


if __name__ == "__main__":
    main()
