"""PLE: experts run batched, and the batched maths equals the per-expert definition."""

from __future__ import annotations

import torch

from duia_spark.model.layers import StackedLinear, TargetAttention
from duia_spark.model.ple import PLE


def _reference_ple(model: PLE, x: torch.Tensor, n_tasks: int, m: int, s: int) -> torch.Tensor:
    """PLE written the textbook way: one expert, one gate at a time."""

    def linear(stack: StackedLinear, i: int, v: torch.Tensor) -> torch.Tensor:
        return v @ stack.weight[i] + stack.bias[i]

    inputs = [x] * (n_tasks + 1)
    for level in model.levels:
        n_exp = n_tasks * m + s
        outs = []
        for e in range(n_exp):
            src = inputs[e // m] if e < n_tasks * m else inputs[n_tasks]
            outs.append(torch.relu(linear(level.experts, e, src)))
        new_inputs = []
        for k in range(n_tasks):
            own = [outs[k * m + j] for j in range(m)] + [outs[n_tasks * m + j] for j in range(s)]
            gate = torch.softmax(linear(level.task_gates, k, inputs[k]), dim=-1)
            new_inputs.append(sum(gate[:, i : i + 1] * own[i] for i in range(len(own))))
        if level.shared_gate is not None:
            gate = torch.softmax(level.shared_gate(inputs[n_tasks]), dim=-1)
            new_inputs.append(sum(gate[:, i : i + 1] * outs[i] for i in range(n_exp)))
        inputs = new_inputs
    logits = []
    for k in range(n_tasks):
        z = torch.relu(linear(model.tower_hidden, k, inputs[k]))
        logits.append(linear(model.tower_out, k, z).squeeze(-1))
    return torch.stack(logits, dim=1)


def test_each_level_holds_its_experts_as_one_stacked_parameter():
    n_tasks, m, s, in_dim, hidden = 6, 2, 3, 40, 24
    model = PLE(in_dim, n_tasks, 3, m, s, hidden, 8)
    n_experts = n_tasks * m + s
    for i, level in enumerate(model.levels):
        expected_in = in_dim if i == 0 else hidden
        assert isinstance(level.experts.weight, torch.nn.Parameter)
        assert level.experts.weight.shape == (n_experts, expected_in, hidden)
        # No per-expert sub-modules: the level's only expert parameters are the stack.
        expert_params = [n for n, _ in level.named_parameters() if n.startswith("experts.")]
        assert sorted(expert_params) == ["experts.bias", "experts.weight"]
        assert not any(isinstance(c, torch.nn.ModuleList) for c in level.modules())


def test_batched_ple_equals_the_per_expert_definition():
    torch.manual_seed(0)
    n_tasks, m, s = 4, 2, 2
    model = PLE(20, n_tasks, 3, m, s, 16, 8)
    x = torch.randn(32, 20)
    expected = _reference_ple(model, x, n_tasks, m, s)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_final_level_has_no_shared_gate_and_single_level_ple_works():
    model = PLE(10, 3, 2, 1, 1, 8, 4)
    assert model.levels[0].shared_gate is not None
    assert model.levels[1].shared_gate is None
    one = PLE(10, 3, 1, 1, 1, 8, 4)
    assert one(torch.randn(5, 10)).shape == (5, 3)


def test_task_gate_ignores_other_tasks_experts():
    """Zeroing task 1's own experts must not change task 0's output on the final level."""
    torch.manual_seed(1)
    n_tasks, m, s = 2, 1, 1
    model = PLE(6, n_tasks, 1, m, s, 5, 3)
    x = torch.randn(8, 6)
    before = model(x)
    with torch.no_grad():
        model.levels[0].experts.weight[1].zero_()  # task 1's only expert
        model.levels[0].experts.bias[1].fill_(3.0)
    after = model(x)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_target_attention_with_shared_table_keys_equals_gathered_keys():
    torch.manual_seed(2)
    attention = TargetAttention(6, 4)
    target, keys = torch.randn(3, 6), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    table, index = torch.randn(7, 4), torch.randint(0, 7, (3, 2))
    shared_mask = torch.tensor([[1, 0], [0, 0], [1, 1]], dtype=torch.bool)
    got = attention(target, keys, mask, (table, index, shared_mask))
    # Reference: the table rows gathered into the sequence, one softmax over both.
    all_keys = torch.cat([keys, table[index]], dim=1)
    all_mask = torch.cat([mask, shared_mask], dim=1)
    torch.testing.assert_close(got, attention(target, all_keys, all_mask))
    assert torch.equal(got[1], torch.zeros(4))  # nothing valid: exactly zero
