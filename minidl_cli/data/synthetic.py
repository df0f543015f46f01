"""Synthetic 2-D data sets: disk (the reference experiment), xor, moons and spirals.

Each factory draws the training set and then the test set from the one generator it is
given, in float64, so the same seed gives the same data on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.data.base import Dataset
from minidl_cli.registry import Range, register

Size = Annotated[int, Range(ge=1)]  # a number of points
Noise = Annotated[float, Range(ge=0)]  # the standard deviation of added Gaussian noise

DISK_RADIUS = 1 / math.sqrt(2 * math.pi)  # area 1/2: the two classes are balanced
XY = ["x1", "x2"]  # the features' names in predict's input files and in the pictures


def _check_sizes(n_train: int, n_test: int) -> None:
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {n!r}")


def _check_noise(noise: float) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")


def _draw(
    sample: Callable[[int], tuple[Tensor, Tensor]],
    n_train: int,
    n_test: int,
    num_classes: int,
) -> Dataset:
    """Draw train then test with `sample(n) -> (x, y)` into a Dataset."""
    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return Dataset(x_train, y_train, x_test, y_test, num_classes, list(XY))


def _balanced_labels(n: int, classes: int, generator: torch.Generator) -> Tensor:
    """n labels, as equal per class as n allows, in random order.

    Shape: (n,) int64.
    """
    return (torch.arange(n) % classes)[torch.randperm(n, generator=generator)]


def _noise(n: int, noise: float, generator: torch.Generator) -> Tensor:
    """Isotropic Gaussian jitter of standard deviation `noise`.

    Shape: (n, 2) float64.
    """
    return noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)


@register("dataset", "disk")
def disk(n_train: Size = 1000, n_test: Size = 1000, *, generator: torch.Generator) -> Dataset:
    """Points uniform in [0,1]²; label 1 inside the disk centred (0.5,0.5) of radius 1/sqrt(2π)."""
    _check_sizes(n_train, n_test)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        x = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        inside = (x - 0.5).pow(2).sum(1) < DISK_RADIUS**2
        return x, inside.long()

    return _draw(sample, n_train, n_test, 2)


@register("dataset", "xor")
def xor(
    n_train: Size = 1000, n_test: Size = 1000, noise: Noise = 0.0, *, generator: torch.Generator
) -> Dataset:
    """Points uniform in [-1,1]²; label 1 where x·y < 0 (opposite quadrants); Gaussian noise."""
    _check_sizes(n_train, n_test)
    _check_noise(noise)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        x = 2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1
        y = (x[:, 0] * x[:, 1] < 0).long()  # labelled before the noise moves the points
        return x + _noise(n, noise, generator), y

    return _draw(sample, n_train, n_test, 2)


@register("dataset", "moons")
def moons(
    n_train: Size = 1000, n_test: Size = 1000, noise: Noise = 0.1, *, generator: torch.Generator
) -> Dataset:
    """Two interleaving half circles (as sklearn's make_moons), balanced; Gaussian noise."""
    _check_sizes(n_train, n_test)
    _check_noise(noise)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = _balanced_labels(n, 2, generator)
        t = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        upper = torch.stack([t.cos(), t.sin()], 1)
        lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
        x = torch.where((y == 0).unsqueeze(1), upper, lower)
        return x + _noise(n, noise, generator), y

    return _draw(sample, n_train, n_test, 2)


@register("dataset", "spirals")
def spirals(
    n_train: Size = 1000,
    n_test: Size = 1000,
    noise: Noise = 0.1,
    classes: Annotated[int, Range(ge=2)] = 2,
    *,
    generator: torch.Generator,
) -> Dataset:
    """`classes` interleaved spiral arms of one turn each, radius 0 to 1; Gaussian noise."""
    _check_sizes(n_train, n_test)
    _check_noise(noise)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = _balanced_labels(n, classes, generator)
        r = torch.rand(n, generator=generator, dtype=torch.float64).sqrt()  # even along arms
        angle = 2 * math.pi * (y / classes + r)  # each arm starts 1/classes turn later
        x = r.unsqueeze(1) * torch.stack([angle.cos(), angle.sin()], 1)
        return x + _noise(n, noise, generator), y

    return _draw(sample, n_train, n_test, classes)
