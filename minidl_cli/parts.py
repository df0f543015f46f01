"""From a resolved config to the parts a run trains, built once: the data (split, standardised
and moved to the device), the task, the model, the loss, the optimizer and the schedule.

`build_parts(config)` checks the config against the data it builds, once
(config.resolver.check_with_data: a problem is a ConfigError, as in validation), then
draws everything from the config's seed: the data from a generator of its own
(data.make_dataset), the validation hold-out from seed + 1, the initial weights from
torch's global RNG seeded with the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from minidl_cli import data as datasets
from minidl_cli import tasks
from minidl_cli.build import build_loss, build_model, build_optimizer, build_scheduler
from minidl_cli.config.resolver import check_with_data, make_checked_dataset
from minidl_cli.nn import Module
from minidl_cli.optim.optimizer import Optimizer


@dataclass
class Split:
    """One part of the data: inputs, true values (class indices or the targets on their own
    scale) and what the loss compares the outputs with (the task's `targets`)."""

    x: Tensor
    y: Tensor
    targets: Tensor


@dataclass
class Parts:
    """Everything one run trains and measures, as `build_parts` made it."""

    config: dict[str, Any]
    device: torch.device
    raw: datasets.Dataset  # the data set as made (its files, class names, preprocessing)
    dataset: datasets.Dataset  # the training part after the validation hold-out
    standardizer: tuple[Tensor, Tensor] | None  # (mean, std) of the training inputs
    task: tasks.Task
    model: Module
    loss_fn: Module
    optimizer: Optimizer
    scheduler: Any
    splits: dict[str, Split]


def resolve_device(name: str) -> torch.device:
    """torch.device of `train.device`; ValueError when cuda is asked for and missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: cuda is not available on this machine; "
                         "use train.device=cpu or train.device=auto")
    return torch.device(name)


def build_parts(config: dict[str, Any]) -> Parts:
    """The parts of the run a resolved config describes (see the module docstring)."""
    train = config["train"]
    device, dtype = resolve_device(train["device"]), getattr(torch, train["dtype"])
    if train.get("threads"):
        torch.set_num_threads(train["threads"])
    raw = make_checked_dataset(config)  # the data, read once
    check_with_data(config, raw)  # shapes, task, inferred sizes: a problem is a ConfigError
    standardize = config["data"].get("standardize", False)
    standardize_target = config["data"].get("standardize_target", False)
    split_gen = torch.Generator().manual_seed(config["seed"] + 1)
    dataset, x_val, y_val = datasets.split_validation(raw, train["val_fraction"], split_gen)
    standardizer = datasets.fit_standardizer(dataset.x_train) if standardize else None
    task = tasks.for_dataset(dataset)
    if standardize_target:
        task.fit(dataset.y_train)

    torch.manual_seed(config["seed"])  # weights and dropout masks come from the global RNG
    model = build_model(config["model"], dataset.input_shape)
    model.to(device=device, dtype=dtype)
    loss_fn = build_loss(config["loss"])
    optimizer = build_optimizer(config["optimizer"], model.parameters())
    scheduler = build_scheduler(config.get("scheduler"), optimizer, train["epochs"])

    def split(x: Tensor, y: Tensor) -> Split:
        if standardizer is not None:
            x = datasets.apply_standardizer(x, *standardizer)
        # token ids stay int64 (an embedding looks them up); features take the run's dtype
        x = x.to(device=device, dtype=dtype if x.is_floating_point() else None)
        y = y.to(device)
        return Split(x, y, task.targets(y, loss_fn, dtype))

    splits = {"train": split(dataset.x_train, dataset.y_train),
              "test": split(dataset.x_test, dataset.y_test)}
    if x_val is not None:
        splits["val"] = split(x_val, y_val)
    for name, part in splits.items():  # what the network gets, in its dtype
        datasets.check_network_data(name, part.x, part.targets, dataset, config)
    return Parts(config, device, raw, dataset, standardizer, task, model, loss_fn, optimizer,
                 scheduler, splits)
