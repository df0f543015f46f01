"""Losses: modules whose forward takes (prediction, target) and returns a 0-dim tensor.

`backward()` starts backpropagation: it returns dL/dprediction.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from minidl_cli.nn.module import Module
from minidl_cli.registry import register

Reduction = Literal["mean", "sum"]
_REDUCTION = {"mean": 1, "sum": 2}  # torch's reduction enum (torch.nn._reduction.get_enum)
_mse_loss = torch._C._nn.mse_loss  # what torch.nn.functional.mse_loss calls
_nll_loss = torch._C._nn.nll_loss  # what torch.nn.functional.nll_loss calls


class Loss(Module):
    """Base class: checks `reduction` and turns class labels into this loss's targets."""

    def __init__(self, reduction: Reduction = "mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def targets(self, labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
        """The target tensor this loss compares with the network's output, from int labels."""
        return labels

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("loss", "mse")
class MSELoss(Loss):
    """L = Σ (x − y)² (divided by the number of elements for reduction='mean').

    Shape: prediction (N, C), target (N, C) float. `targets` picks how class labels are
    encoded for training: 'onehot' (0/1) or 'signed' (−1/+1, suits a Tanh output).
    """

    def __init__(self, reduction: Reduction = "mean",
                 targets: Literal["onehot", "signed"] = "onehot"):
        super().__init__(reduction)
        if targets not in ("onehot", "signed"):
            raise ValueError(f"targets must be 'onehot' or 'signed', got {targets!r}")
        self.encoding = targets

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.shape != target.shape:
            raise ValueError(
                f"MSELoss needs a target of the prediction's shape {tuple(prediction.shape)}, "
                f"got {tuple(target.shape)}"
            )
        self._prediction, self._target = prediction, target
        # Σ (x − y)² as one fused op (torch.nn.functional.mse_loss's kernel, without its
        # Python-side broadcasting, which the shape check above makes unnecessary)
        return _mse_loss(prediction, target, _REDUCTION[self.reduction])

    def backward(self, grad_output: float = 1.0) -> Tensor:
        scale = 2.0 * grad_output  # dL/dx = 2 (x − y), / numel for the mean
        if self.reduction == "mean":
            scale = scale / self._prediction.numel()
        return torch.sub(self._prediction, self._target).mul_(scale)

    def targets(self, labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
        onehot = torch.nn.functional.one_hot(labels, num_classes).to(dtype)
        return onehot if self.encoding == "onehot" else onehot * 2 - 1

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, targets={self.encoding!r}"


@register("loss", "cross_entropy")
class CrossEntropyLoss(Loss):
    """L = −Σₙ log softmax(xₙ)[yₙ] on logits, log-softmax fused so ±1000 logits are safe.

    Shape: logits (N, C) float, labels (N,) int64.
    """

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if (labels.dtype != torch.int64 or labels.dim() != 1
                or labels.size(0) != logits.size(0)):
            raise ValueError(
                "CrossEntropyLoss takes int64 class labels of shape (N,) for logits (N, C); "
                f"got labels {labels.dtype} {tuple(labels.shape)} for logits {tuple(logits.shape)}"
            )
        log_probs = torch.log_softmax(logits, 1)  # fused and stable (log-sum-exp inside)
        self._log_probs, self._labels = log_probs, labels
        return _nll_loss(log_probs, labels, None, _REDUCTION[self.reduction], -100)

    def backward(self, grad_output: float = 1.0) -> Tensor:
        grad = self._log_probs.exp()  # dL/dlogits = softmax(x) − onehot(y)
        grad.scatter_(1, self._labels.unsqueeze(1), -1.0, reduce="add")
        scale = grad_output / grad.size(0) if self.reduction == "mean" else grad_output
        return grad.mul_(scale)
