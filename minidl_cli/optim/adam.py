"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019) with torch.optim's update
rules: bias correction, L2 (Adam) or decoupled (AdamW) weight decay, optional AMSGrad."""

from __future__ import annotations

from typing import Annotated

import torch

from minidl_cli.optim.optimizer import Optimizer, check_non_negative
from minidl_cli.registry import Range, register


@register("optimizer", "adam")
class Adam(Optimizer):
    """Adam: steps from bias-corrected moment estimates (Kingma & Ba, 2015), as torch.optim.Adam.

    The update rule at step t:

        g = g + λ w;  m = β₁ m + (1 − β₁) g;  v = β₂ v + (1 − β₂) g²
        v̂ = max(v̂, v) with amsgrad, else v
        w = w − lr / (1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)
    """

    decoupled_weight_decay = False  # AdamW: w = w (1 − lr λ) instead of g = g + λ w

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: Annotated[float, Range(ge=0)] = 1e-8,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.0, amsgrad: bool = False):
        betas = tuple(betas)
        check_non_negative(lr=lr, eps=eps, weight_decay=weight_decay)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas}; expected two numbers in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, decay = (group["lr"], group["betas"], group["eps"],
                                          group["weight_decay"])
        names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
        self.ensure_state(names, step=0)
        t = self.count_step()
        step_size = lr / (1 - beta1**t)
        correction2 = (1 - beta2**t) ** 0.5
        for w, g, m, v, *v_max in zip(*self.tensors(*names), strict=True):
            if decay != 0 and self.decoupled_weight_decay:
                w.mul_(1 - lr * decay)  # w = w (1 − lr λ)
            elif decay != 0:
                g = g.add(w, alpha=decay)  # g = g + λ w
            m.lerp_(g, 1 - beta1)  # m = β₁ m + (1 − β₁) g
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v = β₂ v + (1 − β₂) g²
            if v_max:
                v = torch.maximum(v_max[0], v, out=v_max[0])  # v̂ = max(v̂, v)
            denom = (v.sqrt() / correction2).add_(eps)  # √v̂ / √(1 − β₂ᵗ) + ε
            w.addcdiv_(m, denom, value=-step_size)  # w = w − lr / (1 − β₁ᵗ) · m / denom


@register("optimizer", "adamw")
class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as torch.optim.AdamW.

    The update rule at step t: w = w (1 − lr λ), then Adam's without the λ w term in g.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: Annotated[float, Range(ge=0)] = 1e-8,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.01, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
