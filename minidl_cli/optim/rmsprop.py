"""RMSprop (Hinton, Coursera lecture 6e, 2012; centred as Graves, 2013) with torch.optim's rule."""

from __future__ import annotations

from typing import Annotated

from minidl_cli.optim.optimizer import Optimizer, check_non_negative
from minidl_cli.registry import Range, register


@register("optimizer", "rmsprop")
class RMSprop(Optimizer):
    """RMSprop: steps divided by a running RMS of the gradient, as torch.optim.RMSprop.

    The update rule:

        g = g + λ w;  v = α v + (1 − α) g²;  with centered: ḡ = α ḡ + (1 − α) g, v̂ = v − ḡ²
        d = g / (√v̂ + ε);  with momentum: b = μ b + d, d = b;  w = w − lr d
    """

    def __init__(self, params, lr: Annotated[float, Range(gt=0)] = 0.01,
                 alpha: Annotated[float, Range(ge=0)] = 0.99,
                 eps: Annotated[float, Range(ge=0)] = 1e-8,
                 weight_decay: Annotated[float, Range(ge=0)] = 0.0,
                 momentum: Annotated[float, Range(ge=0)] = 0.0, centered: bool = False):
        check_non_negative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay,
                           alpha=alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def step(self) -> None:
        group = self.param_groups[0]
        lr, alpha, eps, decay, momentum = (group["lr"], group["alpha"], group["eps"],
                                           group["weight_decay"], group["momentum"])
        centered = group["centered"]
        names = ["square_avg"] + (["momentum_buffer"] if momentum > 0 else []) \
            + (["grad_avg"] if centered else [])
        self.ensure_state(names, step=0)
        self.count_step()
        weights, grads, square_avgs, *extra = self.tensors(*names)
        buffers = extra.pop(0) if momentum > 0 else weights  # (not read without momentum)
        grad_avgs = extra.pop(0) if centered else weights  # (not read unless centered)
        for w, g, v, b, g_avg in zip(weights, grads, square_avgs, buffers, grad_avgs, strict=True):
            if decay != 0:
                g = g.add(w, alpha=decay)  # g = g + λ w
            v.mul_(alpha).addcmul_(g, g, value=1 - alpha)  # v = α v + (1 − α) g²
            if centered:
                g_avg.lerp_(g, 1 - alpha)  # ḡ = α ḡ + (1 − α) g
                denom = v.addcmul(g_avg, g_avg, value=-1).sqrt_().add_(eps)  # √(v − ḡ²) + ε
            else:
                denom = v.sqrt().add_(eps)  # √v + ε
            if momentum > 0:
                b.mul_(momentum).addcdiv_(g, denom)  # b = μ b + g / denom
                w.add_(b, alpha=-lr)  # w = w − lr b
            else:
                w.addcdiv_(g, denom, value=-lr)  # w = w − lr g / denom
