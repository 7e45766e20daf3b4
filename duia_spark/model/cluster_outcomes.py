"""Cluster outcomes: how users of a user cluster responded to items of an item cluster.

The UIE and UPBE vectors are centres of the user's own query space, so they restate
what the ranker's inputs already say about the user; and an MLP learns a dot product
of two vectors badly. This memory turns the two GHCA memories into a collaborative
statistic instead: a table over (user unit, item unit) — the top-level cluster of
the row's query and of its target item — holding each binary task's positives and
labelled exposures. A row reads its cell before the batch writes it, so no row sees
its own label; at serving the table is as training left it.

Per binary task a row gets two log-odds: the cell's rate against the item unit's
(what this user cluster does differently with items of this kind; the within-user
ranking signal a low-active user's own history is too short to give) and the item
unit's against the whole log's; then the exposures behind both, log1p. Rates are
shrunk toward the level above with `prior` pseudo-exposures. Counts fade with a
half-life in training steps, since early queries and centres are far from their
final place, and a cell is cleared when either unit is re-seeded.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from duia_spark.model.ghca import ClusterMemory


class ClusterOutcomeMemory(nn.Module):
    def __init__(
        self,
        user_memory: ClusterMemory,
        item_memory: ClusterMemory,
        n_tasks: int,
        prior: float,
        half_life_steps: int,
    ) -> None:
        super().__init__()
        self.memories = [user_memory, item_memory]  # a list: not registered twice
        self.n_items = item_memory.n_slots
        self.prior = prior
        self.decay = 0.5 ** (1.0 / half_life_steps) if half_life_steps > 0 else 1.0
        n_cells = user_memory.n_slots * item_memory.n_slots
        f32 = torch.float32
        self.register_buffer("positives", torch.zeros(n_cells, n_tasks, dtype=f32))
        self.register_buffer("exposures", torch.zeros(n_cells, n_tasks, dtype=f32))
        # The units' generations the counts were gathered under.
        self.register_buffer("user_generation", user_memory.generation.clone())
        self.register_buffer("item_generation", item_memory.generation.clone())

    @property
    def width(self) -> int:
        return 2 * self.positives.shape[1] + 2

    def _cell(self, user_slot: Tensor, item_slot: Tensor) -> Tensor:
        return user_slot * self.n_items + item_slot

    def forward(self, user_slot: Tensor, item_slot: Tensor) -> Tensor:
        """[B] user units, [B] item units -> features [B, 2T + 2] (see the module doc)."""
        n_users = self.memories[0].n_slots
        pos = self.positives.view(n_users, self.n_items, -1)
        seen = self.exposures.view(n_users, self.n_items, -1)
        item_pos, item_seen = pos.sum(0), seen.sum(0)  # [J, T]
        log_rate = (item_pos.sum(0) + 1.0) / (item_seen.sum(0) + 2.0)  # [T], never 0 or 1
        item_rate = (item_pos + self.prior * log_rate) / (item_seen + self.prior)  # [J, T]
        cell = self._cell(user_slot, item_slot)
        own_rate = self.positives[cell] + self.prior * item_rate[item_slot]
        own_rate = own_rate / (self.exposures[cell] + self.prior)  # [B, T]
        return torch.cat(
            [
                _logit(own_rate) - _logit(item_rate[item_slot]),
                _logit(item_rate[item_slot]) - _logit(log_rate),
                torch.log1p(self.exposures[cell].amax(1, keepdim=True)),
                torch.log1p(item_seen[item_slot].amax(1, keepdim=True)),
            ],
            dim=1,
        )

    @torch.no_grad()
    def observe(self, user_slot: Tensor, item_slot: Tensor, labels: Tensor) -> None:
        """Count a training batch's labels ([B, T], NaN = unknown) into its cells. Under
        DDP every rank adds the sum of all ranks' counts, so the tables stay equal."""
        self._clear_reseeded()
        known = ~torch.isnan(labels)
        delta = torch.zeros(self.positives.shape[0], 2 * labels.shape[1], device=labels.device)
        values = torch.cat([torch.nan_to_num(labels).clamp(0, 1), known.float()], dim=1)
        delta.index_add_(0, self._cell(user_slot, item_slot), values)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(delta)
        pos, seen = delta.split(labels.shape[1], dim=1)
        self.positives.mul_(self.decay).add_(pos)
        self.exposures.mul_(self.decay).add_(seen)

    @torch.no_grad()
    def _clear_reseeded(self) -> None:
        user, item = self.memories
        users = self.positives.view(user.n_slots, self.n_items, -1)
        stale_users = self.user_generation != user.generation
        stale_items = self.item_generation != item.generation
        for table in (users, self.exposures.view(user.n_slots, self.n_items, -1)):
            table[stale_users] = 0.0
            table[:, stale_items] = 0.0
        self.user_generation.copy_(user.generation)
        self.item_generation.copy_(item.generation)

    @torch.no_grad()
    def metrics(self) -> dict[str, float]:
        seen = self.exposures.amax(1)
        return {
            "outcome_cells_seen": float((seen >= 1.0).sum()),
            "outcome_exposures": float(seen.sum()),
        }


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)
