"""One optimizer, two rules: Adam for the ranking model, plain SGD for cluster centres.

The centres' clustering loss is written so that an SGD step of rate rho moves each
centre 2*rho of the way to the mean of its queries (mini-batch k-means). Adam would
rescale that step per coordinate and lose the meaning of rho, so the centre group is
SGD while the rest of the model keeps Adam — in one `torch.optim.Optimizer`, so a
trainer, a checkpoint and an LR scheduler each see a single object.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RankerOptimizer(torch.optim.Optimizer):
    """Param groups carry `algorithm`: "adam" (default) or "sgd"."""

    def __init__(
        self,
        params: Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "algorithm": "adam",
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["algorithm"] not in ("adam", "sgd"):
                raise ValueError(f"unknown algorithm {group['algorithm']!r} in a param group")

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["algorithm"] == "sgd":
                torch._foreach_add_(params, grads, alpha=-group["lr"])
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p]["step"] = 0
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            for s in (self.state[p] for p in params):
                s["step"] += 1
            # Bias correction depends on a parameter's own step count; parameters that
            # skipped steps (no grad) are bucketed apart from the rest.
            buckets: dict[int, list[int]] = {}
            for i, p in enumerate(params):
                buckets.setdefault(self.state[p]["step"], []).append(i)
            for step, idx in buckets.items():
                self._adam_update([params[i] for i in idx], [grads[i] for i in idx], step, group)
        return loss

    def _adam_update(self, params: list, grads: list, step: int, group: dict) -> None:
        beta1, beta2 = group["betas"]
        exp_avg = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, exp_avg, denom, value=-group["lr"] / (1 - beta1**step))
