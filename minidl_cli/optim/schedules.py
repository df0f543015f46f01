"""Learning-rate schedules, stepped once per epoch, with torch.optim.lr_scheduler's semantics."""

from __future__ import annotations

import math
from typing import Annotated

from minidl_cli.optim.optimizer import Optimizer
from minidl_cli.registry import Range, register


class LRScheduler:
    """Base: remembers the base learning rate and sets `lr_at(epoch)` on every step().

    `epoch_options`: options whose null means "the run's train.epochs" (filled in by
    build_scheduler). They follow train.epochs when a run is extended with --resume, so the
    schedule then ends at the new last epoch.
    """

    epoch_options: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.param_groups[0].setdefault("initial_lr",
                                                            optimizer.param_groups[0]["lr"])
        self.last_epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.param_groups[0]["lr"] = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.param_groups[0]["lr"]]

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch, self.base_lr = int(state["last_epoch"]), float(state["base_lr"])
        self.optimizer.param_groups[0]["lr"] = self.lr_at(self.last_epoch)


@register("scheduler", "step")
class StepLR(LRScheduler):
    """lr = base_lr · gamma^⌊epoch / step_size⌋."""

    def __init__(self, optimizer: Optimizer, step_size: Annotated[int, Range(ge=1)],
                 gamma: Annotated[float, Range(gt=0)] = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


@register("scheduler", "cosine")
class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr − eta_min) · (1 + cos(π · epoch / T_max)) / 2.

    T_max null (the default in a config): train.epochs, the whole run one half-period; it
    follows train.epochs when the run is extended. Source: torch.optim.lr_scheduler's
    CosineAnnealingLR (SGDR, Loshchilov & Hutter 2017, without restarts), closed form.
    """

    epoch_options = ("T_max",)

    def __init__(self, optimizer: Optimizer, T_max: Annotated[int | None, Range(ge=1)] = None,
                 eta_min: Annotated[float, Range(ge=0)] = 0.0):
        if T_max is None:
            raise ValueError("T_max is required: the number of epochs of one cosine half-period")
        if T_max < 1:
            raise ValueError(f"T_max must be an integer >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
