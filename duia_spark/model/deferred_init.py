"""Deferred initialisation of large embedding tables on PyTorch's `meta` device.

torchdistx's `deferred_init` has no wheels for current PyTorch; its idea lives in
PyTorch itself. A table built on `meta` has shape and dtype but no storage;
`module.to_empty(device=...)` then allocates it once, directly on the target device
(or rank), and an explicit in-place init fills it. The usual path — build on CPU
with default init, re-init, copy to the device — holds two copies at its peak.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def make_embedding(n_rows: int, dim: int, meta_min_rows: int) -> nn.Embedding:
    """An embedding table with row 0 as padding; built on `meta` if it is large."""
    device = "meta" if n_rows >= meta_min_rows else "cpu"
    return nn.Embedding(n_rows, dim, padding_idx=0, device=device)


@torch.no_grad()
def init_embedding_(weight: torch.Tensor, std: float, generator: torch.Generator) -> None:
    """N(0, std^2) in place, padding row 0 zeroed."""
    weight.normal_(0.0, std, generator=generator)
    weight[0].zero_()


def embedding_generator(seed: int, table_index: int, device: torch.device | str) -> torch.Generator:
    # One generator per table, so a table's values do not depend on what came before it.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + table_index)


def is_deferred(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters(recurse=False))


def materialise_embeddings_(
    tables: list[nn.Embedding], device: torch.device | str, seed: int, std: float
) -> None:
    """Allocate every meta table on `device` (one copy) and initialise it in place;
    tables already materialised are re-initialised with the same scheme."""
    for i, table in enumerate(tables):
        if is_deferred(table):
            table.to_empty(device=device)
        init_embedding_(table.weight, std, embedding_generator(seed, i, table.weight.device))


def parameter_bytes(module: nn.Module) -> int:
    """Bytes the module's parameters occupy once materialised (meta ones included)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def resident_bytes() -> int:
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """VmHWM: the peak resident set size since start (or since `reset_peak_resident`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def reset_peak_resident() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
