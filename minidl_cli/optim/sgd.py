"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import Annotated

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
        weights, grads, *state = self.tensors(*(["momentum_buffer"] if momentum != 0 else []))
        buffers = state[0] if momentum != 0 else weights  # (not read without momentum)
        for w, d, b in zip(weights, grads, buffers, strict=True):
            if group["weight_decay"] != 0:
                d = d.add(w, alpha=group["weight_decay"])  # d = g + λ w
            if momentum != 0:
                if first:
                    b.copy_(d)  # b = d at the first step
                else:
                    b.mul_(momentum).add_(d, alpha=1 - dampening)  # b = μ b + (1 − τ) d
                d = d.add(b, alpha=momentum) if group["nesterov"] else b  # d + μ b, or b
            w.add_(d, alpha=-lr)  # w = w − lr d
