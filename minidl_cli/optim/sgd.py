"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import Annotated

import torch

from minidl_cli.optim.optimizer import Optimizer
from minidl_cli.registry import Range, register


@register("optimizer", "sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov and weight decay, as torch.optim.SGD.

    The update rule:

        d = g + λ w;  b = μ b + (1 − τ) d  (b = d at the first step);
        d = d + μ b (Nesterov) or b;  w = w − lr d
    """

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.001,
                 momentum: Annotated[float, Range(ge=0)] = 0.0, dampening: float = 0.0,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.0, nesterov: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        packed = self.packed
        if momentum == 0 and group["weight_decay"] == 0 and packed is not None and packed.intact:
            packed.data.add_(packed.grad, alpha=-lr)  # plain SGD on packed parameters: one op
            return
        first = momentum != 0 and not self.state
        if first:
            self.init_state(["momentum_buffer"])
        weights, grads, *bufs = self.tensors(*(["momentum_buffer"] if momentum != 0 else []))
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, weights, alpha=group["weight_decay"])
        if momentum != 0:
            bufs = bufs[0]
            if first:  # the buffer starts as the gradient itself
                torch._foreach_copy_(bufs, grads)
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - dampening)
            if group["nesterov"]:
                grads = torch._foreach_add(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        torch._foreach_add_(weights, grads, alpha=-lr)
