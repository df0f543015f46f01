"""Adam (Kingma & Ba, 2015) with torch.optim.Adam's bias correction and L2 weight decay."""

from __future__ import annotations

import math
from typing import Annotated

import torch

from minidl_cli.optim.optimizer import Optimizer
from minidl_cli.registry import Range, register


@register("optimizer", "adam")
class Adam(Optimizer):
    """torch.optim.Adam's update rule:

        g = g + λ w;  m = β₁ m + (1 − β₁) g;  v = β₂ v + (1 − β₂) g²
        w = w − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: Annotated[float, Range(ge=0)] = 1e-8,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.0):
        betas = tuple(betas)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas}; expected two numbers in [0, 1)")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def step(self) -> None:
        group = self.param_groups[0]
        (beta1, beta2), lr = group["betas"], group["lr"]
        if not self.state:
            self.init_state(["exp_avg", "exp_avg_sq"], step=0)
        weights, grads, m, v = self.tensors("exp_avg", "exp_avg_sq")
        for s in self.state.values():
            s["step"] += 1
        step = self.state[0]["step"]
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, weights, alpha=group["weight_decay"])
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        step_size = lr / (1 - beta1**step)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(1 - beta2**step))
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(weights, m, denom, -step_size)
