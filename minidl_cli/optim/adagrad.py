"""Adagrad (Duchi, Hazan & Singer, 2011) with torch.optim.Adagrad's update rule."""

from __future__ import annotations

from typing import Annotated

from minidl_cli.optim.optimizer import Optimizer, check_non_negative
from minidl_cli.registry import Range, register


@register("optimizer", "adagrad")
class Adagrad(Optimizer):
    """Adagrad: steps divided by the root of the summed squared gradients, as torch.optim.Adagrad.

    The update rule at step t:

        g = g + λ w;  s = s + g² (s starts at initial_accumulator_value)
        w = w − lr / (1 + (t − 1) · lr_decay) · g / (√s + ε)
    """

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.01,
                 lr_decay: Annotated[float, Range(ge=0)] = 0.0,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.0,
                 initial_accumulator_value: Annotated[float, Range(ge=0)] = 0.0,
                 eps: Annotated[float, Range(ge=0)] = 1e-10):
        check_non_negative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                           initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def step(self) -> None:
        group = self.param_groups[0]
        decay, eps = group["weight_decay"], group["eps"]
        self.ensure_state(["sum"], fill=group["initial_accumulator_value"], step=0)
        t = self.count_step()
        lr = group["lr"] / (1 + (t - 1) * group["lr_decay"])  # the decayed learning rate
        for w, g, s in zip(*self.tensors("sum"), strict=True):
            if decay != 0:
                g = g.add(w, alpha=decay)  # g = g + λ w
            s.addcmul_(g, g, value=1)  # s = s + g²
            w.addcdiv_(g, s.sqrt().add_(eps), value=-lr)  # w = w − lr g / (√s + ε)
