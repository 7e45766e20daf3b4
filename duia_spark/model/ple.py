"""PLE — Progressive Layered Extraction.

Tang, Liu, Zhao, Gong. "Progressive Layered Extraction (PLE): A Novel Multi-Task
Learning (MTL) Model for Personalized Recommendations", RecSys 2020.

L levels of CGC (Customized Gate Control). In each level every task k owns
`experts_per_task` experts and all tasks share `shared_experts` experts; task k's
gate is a softmax over [its own experts, the shared experts]; every level but the
last also has a shared gate over all experts, whose output feeds the next level's
shared experts. One tower per task turns the final task representation into a logit.

All experts of a level are one `StackedLinear` (weight [n_experts, in, hidden]) and
run as one einsum; gates and towers are stacked the same way. There is no Python
loop over experts, gates or towers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from duia_spark.model.layers import StackedLinear


class CGCLevel(nn.Module):
    """One CGC level. Input: [B, in] (first level) or [B, T+1, in] (task slots + shared slot).
    Output: [B, T+1, hidden] on non-final levels, [B, T, hidden] on the final one."""

    def __init__(
        self,
        in_dim: int,
        n_tasks: int,
        experts_per_task: int,
        shared_experts: int,
        hidden: int,
        is_last: bool,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        t, m, s = n_tasks, experts_per_task, shared_experts
        self.n_tasks = t
        self.n_experts = t * m + s
        self.experts = StackedLinear(self.n_experts, in_dim, hidden)
        self.task_gates = StackedLinear(t, in_dim, m + s)
        self.shared_gate = None if is_last else nn.Linear(in_dim, self.n_experts)
        # Experts are ordered [task 0's m, task 1's m, ..., shared s]. Expert e reads
        # input slot expert_input[e]: its task's slot, or the shared slot t.
        expert_input = [k for k in range(t) for _ in range(m)] + [t] * s
        self.register_buffer("expert_input", torch.tensor(expert_input), persistent=False)
        own = [[k * m + j for j in range(m)] + [t * m + j for j in range(s)] for k in range(t)]
        self.register_buffer("gate_experts", torch.tensor(own), persistent=False)  # [T, m+s]

    def forward(self, x: Tensor) -> Tensor:
        t = self.n_tasks
        if x.dim() == 2:  # first level: every expert and gate sees the same input
            h = self.dropout(torch.relu(self.experts(x)))  # [B, E, H]
            task_logits = self.task_gates(x)  # [B, T, m+s]
            shared_in = x
        else:
            h = self.dropout(torch.relu(self.experts(x[:, self.expert_input])))  # [B, E, H]
            task_logits = self.task_gates(x[:, :t])  # [B, T, m+s]
            shared_in = x[:, t]
        b = h.shape[0]
        # Scatter each task's gate into a [T, E] matrix with zeros on experts it does not
        # own, so all task mixtures are one batched matmul over the expert outputs.
        gates = torch.zeros(b, t, self.n_experts, dtype=h.dtype, device=h.device)
        index = self.gate_experts.unsqueeze(0).expand(b, -1, -1)
        gates = gates.scatter(2, index, torch.softmax(task_logits, dim=-1))  # [B, T, E]
        out = torch.bmm(gates, h)  # [B, T, H]
        if self.shared_gate is not None:
            shared = torch.softmax(self.shared_gate(shared_in), dim=-1).unsqueeze(1)  # [B, 1, E]
            out = torch.cat([out, torch.bmm(shared, h)], dim=1)  # [B, T+1, H]
        return out


class PLE(nn.Module):
    """x [B, in_dim] -> one logit (or regression output) per task [B, T]."""

    def __init__(
        self,
        in_dim: int,
        n_tasks: int,
        levels: int,
        experts_per_task: int,
        shared_experts: int,
        expert_hidden: int,
        tower_hidden: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.levels = nn.ModuleList(
            CGCLevel(
                in_dim if i == 0 else expert_hidden,
                n_tasks,
                experts_per_task,
                shared_experts,
                expert_hidden,
                is_last=i == levels - 1,
                dropout=dropout,
            )
            for i in range(levels)
        )
        self.tower_hidden = StackedLinear(n_tasks, expert_hidden, tower_hidden)
        self.tower_out = StackedLinear(n_tasks, tower_hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for level in self.levels:
            h = level(h)  # [B, T(+1), H]
        z = self.dropout(torch.relu(self.tower_hidden(h)))  # [B, T, tower_hidden]
        return self.tower_out(z).squeeze(-1)  # [B, T]
