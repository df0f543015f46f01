"""Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from minidl_cli.nn.module import Parameter


def clip_grad_norm_(parameters: Iterable[Parameter], max_norm: float, eps: float = 1e-6) -> Tensor:
    """Rescale all gradients together so that their global 2-norm is at most `max_norm`:

        n = √(Σ_p ‖∂L/∂p‖²),   every ∂L/∂p ← ∂L/∂p · min(1, max_norm / (n + ε))

    as torch.nn.utils.clip_grad_norm_ (Pascanu et al., 2013, "On the difficulty of training
    recurrent neural networks"), ε = 1e-6 as torch's. The direction of the whole gradient is
    kept; only its length is capped. Returns n, the norm before clipping (a 0-d tensor).
    Raises ValueError when max_norm is not positive.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = [p.grad for p in parameters]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.stack([g.norm() for g in grads]).norm()  # √(Σ_p ‖g_p‖²)
    scale = (max_norm / (norm + eps)).clamp(max=1.0)  # min(1, max_norm / (n + ε))
    for g in grads:
        g.mul_(scale)
    return norm
