"""torch-rechub's PLE (PyPI `torch-rechub`, the bench extra) on the product's training rows.

The textbook reference of bench/quality.py and bench/ranker_vs_textbook.py: the same rows
and inputs as ours (user and item ids, the target's category, the exposure history
mean-pooled through the item table, the dense features, one embedding per declared side
feature), the same experts and hidden sizes, Adam at `train.lr`, batches of
`train.batch_size`, and the epoch chosen on the validation rows by
`train.selection_metric` with early stopping after `train.early_stopping_patience`
epochs without a gain — the way our trainer chooses. Rows are plain column arrays in
`select_training_columns`' layout (labels / labels_known [N, T] in the model's task order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Columns = Mapping[str, np.ndarray]


@dataclass
class TextbookRun:
    chosen: np.ndarray  # test scores [N, T] of the epoch chosen on the validation rows
    last: np.ndarray  # test scores of the last epoch trained
    best_epoch: int
    best_value: float


def _features(mc) -> list:
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature

    e = mc.embedding_dim
    return [
        SparseFeature("user_idx", mc.n_users, e),
        SparseFeature("item_idx", mc.n_items, e),
        SparseFeature("category_idx", mc.n_categories, e),
        SequenceFeature("hist_items", mc.n_items, e, pooling="mean", shared_with="item_idx", padding_idx=0),
        *[SparseFeature(f"side_{i}", n, e) for i, n in enumerate(mc.side_cat_buckets)],
        DenseFeature("user_dense", embed_dim=mc.n_user_dense),
        DenseFeature("item_dense", embed_dim=mc.n_item_dense),
    ]  # fmt: skip


def textbook_inputs(mc, cols: Columns) -> dict:
    """Column arrays → torch-rechub's feature dict (ids beyond a vocabulary → 0)."""
    import torch

    def ids(name: str, n: int) -> torch.Tensor:
        v = np.asarray(cols[name]).astype(np.int64)
        return torch.as_tensor(np.where((v >= n) | (v < 0), 0, v))

    x = {
        "user_idx": ids("user_idx", mc.n_users),
        "item_idx": ids("item_idx", mc.n_items),
        "category_idx": ids("category_idx", mc.n_categories),
        "hist_items": ids("hist_items", mc.n_items),
        "user_dense": torch.as_tensor(np.asarray(cols["user_dense"]), dtype=torch.float32),
        "item_dense": torch.as_tensor(np.asarray(cols["item_dense"]), dtype=torch.float32),
    }
    if mc.side_cat_buckets:
        sides = np.asarray(cols["side_cat"]).astype(np.int64)
        for i in range(len(mc.side_cat_buckets)):
            x[f"side_{i}"] = torch.as_tensor(sides[:, i])
    return x


def train_textbook(
    mc,
    tc,
    train: Columns,
    test: Columns,
    seed: int,
    validate: Callable[[Callable[[Columns], np.ndarray]], float],
    log: Callable[[str], None] = print,
) -> TextbookRun:
    """Train torch-rechub's PLE for `tc.epochs` epochs; `validate(predict)` → the
    selection value of the model's predictions on the validation rows."""
    import torch
    from torch_rechub.models.multi_task import PLE

    n_tasks = len(mc.tasks)
    torch.manual_seed(seed)
    model = PLE(
        _features(mc),
        ["classification"] * n_tasks,
        n_level=mc.ple_levels,
        n_expert_specific=mc.experts_per_task,
        n_expert_shared=mc.shared_experts,
        expert_params={"dims": [mc.expert_hidden]},
        tower_params_list=[{"dims": [mc.tower_hidden]}] * n_tasks,
    )
    x_train, x_test = textbook_inputs(mc, train), textbook_inputs(mc, test)
    y = torch.as_tensor((np.asarray(train["labels"]) > 0).astype(np.float32))
    known = torch.as_tensor((np.asarray(train["labels_known"]) > 0).astype(np.float32))

    def predict(cols: Columns) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return model(textbook_inputs(mc, cols)).numpy()

    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    n, b = len(y), tc.batch_size
    best, best_epoch, chosen, bad, stopped = -np.inf, 0, None, 0, False
    for epoch in range(1, tc.epochs + 1):
        model.train()
        order = torch.randperm(n)
        for i in range(0, n, b):
            idx = order[i : i + b]
            p = model({k: v[idx] for k, v in x_train.items()}).clamp(1e-6, 1 - 1e-6)
            loss = torch.nn.functional.binary_cross_entropy(p, y[idx], weight=known[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        value = validate(predict)
        if stopped:
            continue  # trained on only for the last epoch's scores
        if value > best:
            best, best_epoch, bad = value, epoch, 0
            model.eval()
            with torch.no_grad():
                chosen = model(x_test).numpy()
        else:
            bad += 1
            stopped = bad >= tc.early_stopping_patience
    model.eval()
    with torch.no_grad():
        last = model(x_test).numpy()
    log(
        f"torch-rechub PLE seed {seed}: epoch {best_epoch} chosen ({best:.4f}), {tc.epochs} trained"
    )
    return TextbookRun(chosen if chosen is not None else last, last, best_epoch, best)
