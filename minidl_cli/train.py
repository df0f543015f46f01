"""The training loop: shuffled mini-batches, forward, loss, backward, step; per-epoch metrics.

    for x, y, share in trainer.batches():     # this epoch's mini-batches
        optimizer.zero_grad()
        output = model(x)                      # forward
        loss = loss_fn(output, y)              # loss
        model.backward_params(loss_fn.backward())  # backward: adds dL/dp into every p.grad
        optimizer.step()                       # step

`Trainer.train_epoch` is that loop, for one process and for every data-parallel rank alike
(distributed.py: a rank's batches are its slices of the global batches, and the all-reduce
of the gradients sits between backward and step). `Trainer.fit` repeats it for the epochs,
measuring each on the whole splits, and hands each epoch to a `Checkpointer` (what is saved
to the run directory, and when) and to an `on_epoch` callback (the progress bar, or a
caller's early stopping). Autograd is off throughout (torch.inference_mode): the gradients
are the modules' own. The parts come from `parts.build_parts`; a checkpoint is `state_dict()`.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from minidl_cli.checkpointer import copy_state
from minidl_cli.early_stopping import Monitor
from minidl_cli.nn.module import forward_in_slices
from minidl_cli.optim import clip_grad_norm_
from minidl_cli.parts import Split, build_parts, resolve_device

if TYPE_CHECKING:
    from minidl_cli.checkpointer import Checkpointer
    from minidl_cli.distributed import World

__all__ = ["Diverged", "Interrupted", "Split", "StopFlag", "Trainer", "resolve_device",
           "stop_on_signals"]


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """Set by a signal handler; the loop polls it between batches."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None


# Signals that stop a run (saved, marked interrupted, exit 128 + signal): Ctrl-C, kill, and a
# closed terminal (SIGHUP). One already ignored (nohup, a background job) stays ignored.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """A StopFlag that SIGINT, SIGTERM and SIGHUP set while the block runs (fit stops at the
    next batch, the last epoch saved); a second signal raises Interrupted at once. The
    previous handlers come back at the end."""
    flag = StopFlag()

    def handler(signum: int, frame: Any) -> None:
        if flag.signum is not None:
            raise Interrupted(signum)
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Trainer:
    """One run's parts (parts.build_parts), its training loop and its resumable state."""

    def __init__(self, config: dict[str, Any], world: World | None = None):
        parts = build_parts(config)
        self.config, self.seed, self.world = config, config["seed"], world
        self.device, self.raw, self.dataset = parts.device, parts.raw, parts.dataset
        self.standardizer, self.task, self.splits = parts.standardizer, parts.task, parts.splits
        self.model, self.loss_fn = parts.model, parts.loss_fn
        self.optimizer, self.scheduler = parts.optimizer, parts.scheduler
        self.shuffle_gen = torch.Generator(device=self.device).manual_seed(self.seed)
        self.history: list[dict[str, float]] = []  # one metrics row per epoch
        self.monitor = Monitor.from_config(config["train"])  # best.pt's epoch; early stopping
        _check_monitor(self.monitor, self.columns)
        self.elapsed = 0.0  # seconds of training, over every resume
        self.extra: dict[str, Any] = {}  # a caller's own plain-data state, kept in checkpoints
        self.batch_loss: Tensor | None = None  # the last batch's loss (never read in the loop)

    @property
    def epoch(self) -> int:  # epochs completed
        return len(self.history)

    @property
    def columns(self) -> list[str]:  # metrics.csv's header for this run's task and splits
        return self.task.columns(list(self.splits))

    # --- one epoch ---

    def batches(self) -> Iterator[tuple[Tensor, Tensor, float]]:
        """This epoch's mini-batches (x, targets, share): the training split shuffled by the
        seeded generator (one gather an epoch), then slices (views) of `train.batch_size`
        rows. `share` is the part of the batch's gradient they give: 1 in one process, a
        rank's share of each global batch in data-parallel training (World.shards)."""
        part, size = self.splits["train"], self.config["train"]["batch_size"]
        x, targets = part.x, part.targets
        if self.config["train"]["shuffle"]:
            order = torch.randperm(len(x), generator=self.shuffle_gen, device=self.device)
            if self.world is None and x.numel() * x.element_size() > EPOCH_GATHER_BYTES:
                yield from batch_by_batch(x, targets, order, size)  # the same batches
                return
            x, targets = x.index_select(0, order), targets.index_select(0, order)  # x[order]
        if self.world is not None:
            self.world.seed_masks(self.seed, self.epoch)
            yield from self.world.shards(x, targets, size, self.loss_fn.reduction == "mean",
                                         getattr(self.loss_fn, "ignore_index", None))
            return
        for start in range(0, len(x), size):
            yield x[start:start + size], targets[start:start + size], 1.0

    def train_epoch(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """One pass of mini-batch training over the training split (returns early when
        should_stop() turns true). The batch losses are not read (a `.item()` per step would
        make a GPU wait at every step): fit checks the epoch's loss instead."""
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        clip = self.config["train"].get("clip_grad_norm")
        self._set_training(True)
        for x, y, share in self.batches():
            if should_stop():
                return
            optimizer.zero_grad()
            output = model(x)  # forward
            self.batch_loss = loss_fn(output, y)  # loss
            # backward: adds dL/dp into every p.grad (not dL/dx: the data needs no gradient)
            model.backward_params(loss_fn.backward())
            if self.world is not None:  # data parallel: the whole batch's gradient everywhere
                self.world.reduce_gradients(optimizer.params, share)
            if clip is not None:  # the whole batch's gradient, so every rank clips alike
                clip_grad_norm_(optimizer.params, clip)
            optimizer.step()  # step

    def evaluate(self, split: str) -> tuple[float, Tensor]:
        """(mean loss per row, or per token, network outputs) on a whole split, in eval mode.

        Shape: outputs (n, num_outputs), or (n, T, V); the task turns them into metrics.
        """
        part = self.splits[split]
        self._set_training(False)
        outputs = forward_in_slices(self.model, part.x,  # a slice of rows at a time
                                    row_outputs=math.prod(self.dataset.output_shape))
        loss = self.loss_fn(outputs, part.targets).item()
        if self.loss_fn.reduction == "sum":
            loss /= self.task.count(part.y)  # per row, or per token for a language model
        return loss, outputs

    def _set_training(self, mode: bool) -> None:
        if self.model.training is not mode:  # walk the modules only when the mode changes
            self.model.train(mode)

    def measure(self) -> dict[str, float]:
        """The metrics row of the epoch just trained: loss and the task's metrics per split."""
        row: dict[str, float] = {"epoch": self.epoch + 1}
        for split, part in self.splits.items():
            row[f"{split}_loss"], outputs = self.evaluate(split)
            for name, value in self.task.metrics(outputs, part.y).items():
                row[f"{split}_{name}"] = value
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        return row

    # --- the epochs ---

    def fit(self, epochs: int, checkpointer: Checkpointer | None = None,
            on_epoch: Callable[[dict[str, float]], None] | None = None,
            should_stop: StopFlag | None = None) -> None:
        """Train until `epochs` epochs in all are done; after each, its metrics row goes to
        the history, the checkpointer (if any) and `on_epoch` (if any).

        Raises Diverged when an epoch's training loss is not finite, Interrupted when
        should_stop() turns true (the epoch in progress is abandoned). Either way, and on any
        error, the checkpointer saves the last completed epoch before the exception leaves.
        """
        should_stop = should_stop or StopFlag()
        started = time.perf_counter() - self.elapsed
        try:
            # autograd off: every gradient is a module's own backward. inference_mode costs
            # less per torch call than no_grad (a sixth of the reference step); what outlives
            # it and is updated in place later (the optimizer's state) the optimizer makes
            # outside it (Optimizer.init_state)
            with torch.inference_mode():
                while self.epoch < epochs and not self.stopped_early:
                    self.train_epoch(should_stop)
                    if should_stop():
                        raise Interrupted(should_stop.signum)
                    row, improved = self._end_epoch(started)
                    if checkpointer is not None:
                        final = self.epoch == epochs or self.stopped_early
                        checkpointer.epoch_done(self, improved, final=final)
                    if on_epoch is not None:
                        on_epoch(row)
        finally:
            if checkpointer is not None:
                checkpointer.close()

    def _end_epoch(self, started: float) -> tuple[dict[str, float], bool]:
        """Measure, check and record the epoch: (its row, whether it improved the monitor)."""
        row = self.measure()
        if not math.isfinite(row["train_loss"]):
            raise Diverged(f"the training loss became {row['train_loss']} "
                           f"in epoch {row['epoch']}")
        if self.scheduler:
            self.scheduler.step()
        self.elapsed = row["elapsed_s"] = round(time.perf_counter() - started, 4)
        self.history.append(row)
        return row, self.monitor.update(row)

    @property
    def stopped_early(self) -> bool:  # the monitored metric did not improve for `patience`
        return self.monitor.should_stop

    # --- state: everything a bit-identical resume needs, as plain data ---

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's content: weights, optimizer and schedule, RNG states, history,
        counters, `extra`, the config and what using the model needs (`describe`)."""
        mean, std = self.standardizer or (None, None)
        return {
            "epoch": self.epoch,
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": rng_state(self.shuffle_gen, self.device),
            "standardizer": None if mean is None else {"mean": mean, "std": std},
            **self.describe(),
            "history": self.history,
            "monitor": self.monitor.state_dict(),  # best epoch so far, early stopping's count
            "elapsed_s": self.elapsed,
            "extra": self.extra,
            "config": self.config,
        }

    def describe(self) -> dict[str, Any]:
        """What using the model needs besides its weights, as plain data (a checkpoint's
        part that `predict` reads): the task and its state, the feature names, the input
        shape and the data set's preprocessing of raw rows."""
        return {
            "task": self.task.state_dict(),
            "features": list(self.dataset.feature_names),
            "input_shape": list(self.dataset.input_shape),
            "preprocessing": self.dataset.preprocessing,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict(): weights, optimizer, schedule, RNGs and history."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        load_rng_state(state["rng"], self.shuffle_gen, self.device)
        self.history = [dict(row) for row in state["history"]]
        if "monitor" in state:
            self.monitor.load_state_dict(state["monitor"])
        elif "best_val_loss" in state:  # a checkpoint written before the monitor
            self.monitor.best = state["best_val_loss"]
        self.elapsed = state.get("elapsed_s", 0.0)
        self.extra = dict(state.get("extra") or {})

    def snapshot(self) -> dict[str, Any]:  # state_dict() with its tensors copied
        return copy_state(self.state_dict())


# Above this an epoch's shuffle gathers batch by batch instead of copying the whole
# training split at once: a stream text's windows with target next are views of the text,
# and their copy is block_size times it (tiny Shakespeare at block_size 2048: 16 GB).
EPOCH_GATHER_BYTES = 1 << 30


def batch_by_batch(x: Tensor, targets: Tensor, order: Tensor, size: int
                   ) -> Iterator[tuple[Tensor, Tensor, float]]:
    """The batches of x[order] and targets[order], each gathered on its own: the same
    batches as gathering the epoch first, holding one batch at a time.
    Shape: x (N, ...), targets (N, ...), order (N,) -> (size, ...) per batch."""
    for start in range(0, len(x), size):
        rows = order[start:start + size]
        yield x.index_select(0, rows), targets.index_select(0, rows), 1.0


def rng_state(shuffle_gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    """The random number generators a run draws from: torch's global one (initial weights,
    dropout), the shuffling generator, and the device's on CUDA."""
    rng = {"torch": torch.get_rng_state(), "shuffle": shuffle_gen.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def load_rng_state(rng: dict[str, Tensor], shuffle_gen: torch.Generator,
                   device: torch.device) -> None:
    """Set the generators rng_state() recorded (the CUDA one only on CUDA)."""
    torch.set_rng_state(rng["torch"])
    shuffle_gen.set_state(rng["shuffle"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def _check_monitor(monitor: Monitor, columns: list[str]) -> None:
    """ConfigError when train.early_stopping watches a metric this run does not have."""
    if monitor.patience is not None and monitor.name not in columns:
        from minidl_cli.config import ConfigError

        watched = [c for c in columns if c.startswith("val_")]
        raise ConfigError([f"train.early_stopping.monitor: {monitor.name} is not a metric of "
                           f"this run; use one of {', '.join(watched)}"])
