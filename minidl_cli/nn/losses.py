"""Losses: modules whose forward takes (prediction, target) and returns a 0-dim tensor.

`backward()` starts backpropagation: it returns dL/dprediction, written out as its formula
(n is the number of elements averaged over: prediction.numel() for reduction='mean',
1 for 'sum'), from what the last forward kept.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor
from torch.nn.functional import nll_loss, one_hot

from minidl_cli.nn.module import Module
from minidl_cli.registry import Range, register

Reduction = Literal["mean", "sum"]
Encoding = Literal["onehot", "signed"]
IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss's: a label that is no prediction (padding)


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


class ElementwiseLoss(Loss):
    """Base of the losses of the difference d = x − y, element by element (MSE, L1, Huber).

    Shape: prediction x and target y of one shape, float. Class labels become targets as
    `targets` says: 'onehot' (0/1) or 'signed' (−1/+1, suits a Tanh output), so these
    losses also train classifiers.
    """

    def __init__(self, reduction: Reduction = "mean", targets: Encoding = "onehot"):
        super().__init__(reduction)
        if targets not in ("onehot", "signed"):
            raise ValueError(f"targets must be 'onehot' or 'signed', got {targets!r}")
        self.encoding = targets

    def difference(self, prediction: Tensor, target: Tensor) -> Tensor:
        """d = x − y, kept for backward; ValueError unless the shapes are equal."""
        if prediction.shape != target.shape:
            raise ValueError(
                f"{type(self).__name__} needs a target of the prediction's shape "
                f"{tuple(prediction.shape)}, got {tuple(target.shape)}"
            )
        self._diff = diff = torch.sub(prediction, target)
        return diff

    def reduce(self, losses: Tensor) -> Tensor:
        """Mean or sum of the element-wise losses."""
        return losses.mean() if self.reduction == "mean" else losses.sum()

    def scale(self, grad_output: float) -> float:
        """dL/dℓᵢ of the reduction, times the incoming gradient: 1/n for the mean, 1 for the sum."""
        return grad_output / self._diff.numel() if self.reduction == "mean" else grad_output

    def targets(self, labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
        onehot = one_hot(labels, num_classes).to(dtype)
        return onehot if self.encoding == "onehot" else onehot * 2 - 1

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, targets={self.encoding!r}"


@register("loss", "mse")
class MSELoss(ElementwiseLoss):
    """L = Σ (x − y)² (divided by the number of elements for reduction='mean').

    Shape: prediction (N, C), target (N, C) float. `targets`: how class labels are encoded
    for training, 'onehot' (0/1) or 'signed' (−1/+1).
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.reduce(self.difference(prediction, target).square())

    def backward(self, grad_output: float = 1.0) -> Tensor:
        return self._diff * (2.0 * self.scale(grad_output))  # dL/dx = 2 (x − y) / n


@register("loss", "l1")
class L1Loss(ElementwiseLoss):
    """L = Σ |x − y| (divided by the number of elements for reduction='mean').

    Shape: prediction (N, C), target (N, C) float. `targets` as MSELoss.
    """

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self.reduce(self.difference(prediction, target).abs())

    def backward(self, grad_output: float = 1.0) -> Tensor:
        # dL/dx = sign(x − y) / n, 0 where x = y (as torch.nn.L1Loss)
        return self._diff.sign().mul_(self.scale(grad_output))


@register("loss", "huber")
class HuberLoss(ElementwiseLoss):
    """L = Σ ℓ(x − y), ℓ(d) = d²/2 for |d| ≤ delta, else delta · (|d| − delta/2) (Huber, 1964).

    Quadratic near the target, linear (robust to outliers) beyond `delta` > 0; divided by
    the number of elements for reduction='mean', as torch.nn.HuberLoss.
    Shape: prediction (N, C), target (N, C) float. `targets` as MSELoss.
    """

    def __init__(self, reduction: Reduction = "mean", delta: Annotated[float, Range(gt=0)] = 1.0,
                 targets: Encoding = "onehot"):
        super().__init__(reduction, targets)
        if not delta > 0:
            raise ValueError(f"HuberLoss needs delta > 0, got {delta}")
        self.delta = delta

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        d, delta = self.difference(prediction, target), self.delta
        size = d.abs()
        return self.reduce(torch.where(size <= delta, 0.5 * d * d, delta * (size - 0.5 * delta)))

    def backward(self, grad_output: float = 1.0) -> Tensor:
        # dL/dx = (x − y) where |x − y| ≤ delta, else delta · sign(x − y): clamp(x − y, ±delta) / n
        return self._diff.clamp(-self.delta, self.delta).mul_(self.scale(grad_output))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delta={self.delta}"


@register("loss", "smooth_l1")
class SmoothL1Loss(ElementwiseLoss):
    """L = Σ ℓ(x − y), ℓ(d) = d² / (2 beta) for |d| < beta, else |d| − beta/2 (Girshick, 2015).

    HuberLoss(delta=beta) / beta; beta = 0 is L1Loss. Divided by the number of elements for
    reduction='mean', as torch.nn.SmoothL1Loss.
    Shape: prediction (N, C), target (N, C) float. `targets` as MSELoss.
    """

    def __init__(self, reduction: Reduction = "mean", beta: Annotated[float, Range(ge=0)] = 1.0,
                 targets: Encoding = "onehot"):
        super().__init__(reduction, targets)
        if not beta >= 0:
            raise ValueError(f"SmoothL1Loss needs beta >= 0, got {beta}")
        self.beta = beta

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        d, beta = self.difference(prediction, target), self.beta
        size = d.abs()
        if beta == 0:
            return self.reduce(size)
        return self.reduce(torch.where(size < beta, 0.5 * d * d / beta, size - 0.5 * beta))

    def backward(self, grad_output: float = 1.0) -> Tensor:
        scale, beta = self.scale(grad_output), self.beta
        if beta == 0:
            return self._diff.sign().mul_(scale)  # dL/dx = sign(x − y) / n: L1
        # dL/dx = (x − y) / beta where |x − y| < beta, else sign(x − y) = clamp(x − y, ±beta) / beta
        return self._diff.clamp(-beta, beta).mul_(scale / beta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"


@register("loss", "cross_entropy")
class CrossEntropyLoss(Loss):
    """L = −Σₙ log softmax(xₙ)[yₙ] on logits, log-softmax fused so ±1000 logits are safe.

    Shape: logits (N, C) float with labels (N,) int64, or logits (N, T, C) with labels
    (N, T) (a language model: one prediction per position). The class axis is last and
    every position counts as one row: the mean divides by the rows counted. A label equal
    to `ignore_index` (torch.nn.CrossEntropyLoss's, -100: the padding of a text's lines) is
    no row: no loss, no gradient, not counted. Raises ValueError for labels that are not
    int64 or not the logits' shape without the class axis.
    """

    def __init__(self, reduction: Reduction = "mean", ignore_index: int = IGNORE_INDEX):
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_probs = self._log_softmax(logits, labels)
        if log_probs.dim() != 2:  # (N, T, C): every position is one row
            log_probs, labels = log_probs.reshape(-1, log_probs.size(-1)), labels.reshape(-1)
        return nll_loss(log_probs, labels, reduction=self.reduction,  # −Σₙ log pₙ[yₙ]
                        ignore_index=self.ignore_index)

    def _log_softmax(self, logits: Tensor, labels: Tensor) -> Tensor:
        """log softmax(x) over the last axis, kept with the labels for backward; ValueError
        on bad labels."""
        if (labels.dtype != torch.int64 or logits.dim() < 2
                or labels.shape != logits.shape[:-1]):
            raise ValueError(
                "CrossEntropyLoss takes int64 class labels of shape (N,) for logits (N, C), or "
                f"(N, T) for logits (N, T, C); got labels {labels.dtype} {tuple(labels.shape)} "
                f"for logits {tuple(logits.shape)}"
            )
        log_probs = torch.log_softmax(logits, -1)  # fused and stable (log-sum-exp inside)
        self._log_probs, self._labels = log_probs, labels
        return log_probs

    def backward(self, grad_output: float = 1.0) -> Tensor:
        grad = self._log_probs.exp()  # softmax(x)
        ignored = self._labels == self.ignore_index
        if not ignored.any():  # every row counts (a classifier's batch)
            grad.scatter_(-1, self._labels.unsqueeze(-1), -1.0, reduce="add")  # − onehot(y)
            # dL/dx = (softmax(x) − onehot(y)) / M, M = N (or N·T) rows for the mean
            scale = grad_output / self._labels.numel() if self.reduction == "mean" else grad_output
            return grad.mul_(scale)
        # padding rows: no loss and no gradient; the mean divides by the rows counted
        labels = self._labels.masked_fill(ignored, 0)  # any class: the row is zeroed next
        grad.scatter_(-1, labels.unsqueeze(-1), -1.0, reduce="add")  # − onehot(y)
        grad.masked_fill_(ignored.unsqueeze(-1), 0.0)
        rows = int((~ignored).sum()) if self.reduction == "mean" else 1
        return grad.mul_(grad_output / max(rows, 1))
