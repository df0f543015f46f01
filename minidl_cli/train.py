"""The training loop: seeded data and model, shuffled mini-batches, per-epoch evaluation.

`Trainer` builds everything a resolved config describes; `fit` trains it into a `Run`,
appending each epoch's metrics row and saving `checkpoints/last.pt` (with the metrics
history and every RNG state) so that an interrupted or killed run resumes to bit-identical
weights: at most every SAVE_EVERY_S seconds, at the last epoch, and whenever training
stops (signal, divergence, error), when last.pt then holds the last completed epoch.
Autograd is off while training: fit runs in torch.inference_mode (cheaper per torch
call than no_grad); tensors that outlive it (optimizer state, the kept copies) are made
outside it, so that they can be updated in place after fit too.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from minidl_cli import data as datasets
from minidl_cli import tasks
from minidl_cli.build import build_loss, build_model, build_optimizer, build_scheduler
from minidl_cli.runs import Run

if TYPE_CHECKING:
    from minidl_cli.distributed import World

SAVE_EVERY_S = 1.0  # write last.pt at most this often: a checkpoint write (torch.save, fsync,
# rename) costs as much as an epoch of the reference network; a kill -9 loses at most this


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: cuda is not available on this machine; "
                         "use train.device=cpu or train.device=auto")
    return torch.device(name)


@dataclass
class Split:
    """One part of the data: inputs, true values (class indices or the targets on their own
    scale) and what the loss compares the outputs with (the task's `targets`)."""

    x: Tensor
    y: Tensor
    targets: Tensor


class Trainer:
    """Everything one run needs, built from a resolved config and its seed."""

    def __init__(self, config: dict[str, Any], world: World | None = None):
        self.config = config
        self.world = world  # data-parallel ranks (distributed.py); None: this process alone
        train_cfg = config["train"]
        self.seed = config["seed"]
        self.device = resolve_device(train_cfg["device"])
        if train_cfg.get("threads"):
            torch.set_num_threads(train_cfg["threads"])
        self.dtype = getattr(torch, train_cfg["dtype"])

        data_cfg = dict(config["data"])
        standardize = data_cfg.pop("standardize", False)
        standardize_target = data_cfg.pop("standardize_target", False)
        data_type = data_cfg.pop("type")
        self.raw = datasets.make_dataset(data_type, data_cfg, self.seed)
        split_gen = torch.Generator().manual_seed(self.seed + 1)
        self.dataset, x_val, y_val = datasets.split_validation(
            self.raw, train_cfg["val_fraction"], split_gen)
        self.mean = self.std = None
        if standardize:
            self.mean, self.std = datasets.fit_standardizer(self.dataset.x_train)
        self.task = tasks.for_dataset(self.dataset)
        if standardize_target:
            self.task.fit(self.dataset.y_train)

        torch.manual_seed(self.seed)  # weights and dropout masks come from the global RNG
        self.model = build_model(config["model"], self.dataset.input_shape)
        self.model.to(device=self.device, dtype=self.dtype)
        self.loss_fn = build_loss(config["loss"])
        self.optimizer = build_optimizer(config["optimizer"], self.model.parameters())
        self.scheduler = build_scheduler(config.get("scheduler"), self.optimizer,
                                         train_cfg["epochs"])
        self.shuffle_gen = torch.Generator(device=self.device).manual_seed(self.seed)

        self.splits = {"train": self._split(self.dataset.x_train, self.dataset.y_train),
                       "test": self._split(self.dataset.x_test, self.dataset.y_test)}
        if x_val is not None:
            self.splits["val"] = self._split(x_val, y_val)
        for name, split in self.splits.items():  # what the network gets, in its dtype
            datasets.check_network_data(name, split.x, split.targets, self.dataset, config)
        self.history: list[dict[str, float]] = []
        self.saved_epoch = 0  # the epoch last.pt holds
        self._kept: dict[str, Any] | None = None  # the last completed epoch's state (_keep)
        self._copies: list[Tensor] | None = None  # its tensors, reused from epoch to epoch
        self._layout: list[tuple] = []  # their shapes, dtypes and devices
        self._unsaved = False  # whether last.pt is older than _kept
        self._pending_best: dict[str, Any] | None = None  # a state fit has yet to write
        self.best_val_loss = math.inf
        self.elapsed = 0.0

    def _split(self, x: Tensor, y: Tensor) -> Split:
        if self.mean is not None:
            x = datasets.apply_standardizer(x, self.mean, self.std)
        # token ids stay int64 (an embedding looks them up); features take the run's dtype
        x = x.to(device=self.device, dtype=self.dtype if x.is_floating_point() else None)
        y = y.to(self.device)
        return Split(x, y, self.task.targets(y, self.loss_fn, self.dtype))

    @property
    def columns(self) -> list[str]:
        """metrics.csv's header for this run's task and splits."""
        return self.task.columns(list(self.splits))

    @property
    def epoch(self) -> int:
        return len(self.history)

    # --- one epoch of SGD, and evaluation ---

    def train_epoch(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Shuffled mini-batches: one gather per epoch, then slices (views) of it.

        The batch losses are not read here (a `.item()` per step would make a GPU wait at
        every step): a NaN or infinite loss leaves NaN weights, and fit stops the run when
        the epoch's training loss is not finite.
        """
        train, batch_size = self.splits["train"], self.config["train"]["batch_size"]
        model, optimizer = self.model, self.optimizer
        x, targets = train.x, train.targets
        if self.config["train"]["shuffle"]:
            order = torch.randperm(len(x), generator=self.shuffle_gen, device=self.device)
            x, targets = x.index_select(0, order), targets.index_select(0, order)  # = x[order]
        self._set_training(True)
        if self.world is not None:
            return self._train_shard(x, targets, should_stop)
        gradient = _loss_gradient(self.loss_fn)
        for start in range(0, len(x), batch_size):
            if should_stop():
                return
            optimizer.zero_grad()
            model.backward(gradient(model(x[start:start + batch_size]),
                                    targets[start:start + batch_size]))
            optimizer.step()

    def _train_shard(self, x: Tensor, targets: Tensor, should_stop: Callable[[], bool]) -> None:
        """Data-parallel: this rank's slice of each global batch; the step uses all ranks' rows."""
        world, batch_size = self.world, self.config["train"]["batch_size"]
        params = self.model.parameters()
        mean = getattr(self.loss_fn, "reduction", "mean") == "mean"
        world.seed_masks(self.seed, self.epoch)
        for start in range(0, len(x), batch_size):
            if should_stop():
                return
            stop = min(start + batch_size, len(x))
            lo, hi = world.shard(start, stop)
            self.optimizer.zero_grad()
            loss = None
            if hi > lo:  # a batch smaller than the world leaves some ranks without rows
                loss = self.loss_fn(self.model(x[lo:hi]), targets[lo:hi])
                self.model.backward(self.loss_fn.backward())
            loss = world.reduce_gradients(params, loss, (hi - lo) / (stop - start) if mean else 1)
            if not math.isfinite(loss):
                raise Diverged(f"the training loss became {loss} in epoch {self.epoch + 1}")
            self.optimizer.step()

    def evaluate(self, split: str) -> tuple[float, Tensor]:
        """(mean loss per row, or per token, network outputs) on a whole split, in eval mode.

        Shape: outputs (n, num_outputs), or (n, T, V); the task turns them into metrics.
        """
        part = self.splits[split]
        self._set_training(False)
        outputs = self.model(part.x)
        loss = self.loss_fn(outputs, part.targets).item()
        if self.loss_fn.reduction == "sum":
            loss /= self.task.count(part.y)  # per row, or per token for a language model
        return loss, outputs

    def _set_training(self, mode: bool) -> None:
        """model.train(mode), walking the modules only when the model is in the other mode
        (three walks an epoch cost the reference run ~0.05 CPU s)."""
        if self.model.training is not mode:
            self.model.train(mode)

    def measure(self) -> dict[str, float]:
        """The metrics row of the epoch just finished: loss and the task's metrics per split."""
        row: dict[str, float] = {"epoch": self.epoch + 1}
        for split, part in self.splits.items():
            row[f"{split}_loss"], outputs = self.evaluate(split)
            for name, value in self.task.metrics(outputs, part.y).items():
                row[f"{split}_{name}"] = value
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        return row

    # --- state: everything a bit-identical resume needs, as plain data ---

    def _rng_state(self) -> dict[str, Tensor]:
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": self._rng_state(),
            "standardizer": None if self.mean is None else {"mean": self.mean, "std": self.std},
            **self.describe(),
            "history": self.history,
            "best_val_loss": self.best_val_loss,
            "elapsed_s": self.elapsed,
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

    def snapshot(self) -> dict[str, Any]:
        """state_dict() with its tensors copied: it stays as it is while training goes on."""
        state = self.state_dict()
        trees = [state["model"], state["optimizer"]]
        tensors: list[Tensor] = []
        _collect_tensors(trees, tensors)
        state["model"], state["optimizer"] = _with_tensors(trees, (t.clone() for t in tensors))
        state["history"] = list(self.history)
        return state

    def _keep(self) -> None:
        """Keep what changes from epoch to epoch (weights, optimizer and scheduler state, RNG
        states, counters) for a later write, cheaply: the tensors are copied with one foreach
        copy into the buffers of the previous kept state (unless best.pt still needs those),
        and the history is kept by its length (rows never change once appended)."""
        model, optimizer = dict(self.model.state_dict()), self.optimizer.state_dict()
        sources: list[Tensor] = []
        _collect_tensors([model, optimizer], sources)
        layout = [(t.shape, t.dtype, t.device) for t in sources]
        if self._copies is not None and layout == self._layout:
            torch._foreach_copy_(self._copies, sources)
        else:
            with torch.inference_mode(False):  # plain tensors: they outlive fit's inference mode
                self._copies, self._layout = [t.clone() for t in sources], layout
        model, optimizer = _with_tensors([model, optimizer], iter(self._copies))
        self._kept = {
            "epoch": self.epoch, "model": model, "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": self._rng_state(), "best_val_loss": self.best_val_loss,
            "elapsed_s": self.elapsed,
        }

    def _kept_state(self) -> dict[str, Any]:
        """The kept state as state_dict() gives it (same keys, same order)."""
        state = self.state_dict()
        state.update(self._kept)
        state["history"] = self.history[:self._kept["epoch"]]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.shuffle_gen.set_state(rng["shuffle"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history = [dict(row) for row in state["history"]]
        self.saved_epoch = self.epoch
        self.best_val_loss = state.get("best_val_loss", math.inf)
        self.elapsed = state.get("elapsed_s", 0.0)

    # --- the loop ---

    def fit(self, run: Run | None, epochs: int, progress: Callable[[dict], None] | None = None,
            should_stop: StopFlag | None = None) -> None:
        """Train up to `epochs` in total into `run`: a metrics row each epoch, last.pt at
        most every SAVE_EVERY_S seconds, at the last epoch and whenever training stops.

        Raises Diverged (last.pt gets the last good epoch) or Interrupted (when should_stop()
        turns true; the epoch in progress is abandoned, last.pt gets the one before).
        """
        should_stop = should_stop or StopFlag()
        every = self.config["train"]["checkpoint_every"]
        started = time.perf_counter() - self.elapsed
        written = time.perf_counter()
        try:
            with torch.inference_mode():  # no autograd: cheaper per torch call than no_grad
                while self.epoch < epochs:
                    self.train_epoch(should_stop)
                    if should_stop():
                        raise Interrupted(should_stop.signum)
                    row = self.measure()
                    if not math.isfinite(row["train_loss"]):
                        raise Diverged(f"the training loss became {row['train_loss']} "
                                       f"in epoch {row['epoch']}")
                    if self.scheduler:
                        self.scheduler.step()
                    self.elapsed = row["elapsed_s"] = round(time.perf_counter() - started, 4)
                    self.history.append(row)
                    self._record(run, every)
                    if self.epoch == epochs or time.perf_counter() - written >= SAVE_EVERY_S:
                        self._write(run)
                        written = time.perf_counter()
                    if progress:
                        progress(row)
        finally:  # stopped, diverged, failed or done: last.pt gets the last completed epoch
            if run is not None:  # None: a data-parallel rank other than 0 (rank 0 writes)
                self._write(run)
                run.close()

    def _record(self, run: Run | None, every: int) -> None:
        """Append the epoch's metrics row and keep its state for _write (epoch_NNNN.pt is
        written at once)."""
        if run is None:
            return
        row = self.history[-1]
        improved = "val_loss" in row and row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss = row["val_loss"]
        run.append_metrics(self.history, self.columns)
        self._keep()
        self._unsaved = True
        if improved:
            self._pending_best = self._kept_state()
            self._copies = None  # best.pt's until written: the next _keep copies elsewhere
        if every and self.epoch % every == 0:
            run.save_checkpoint(self._kept_state(), str(self.epoch))

    def _write(self, run: Run) -> None:
        """Write the kept states to best.pt and last.pt, and epochs_completed to meta.json."""
        if self._pending_best is not None:
            run.save_checkpoint(self._pending_best, "best")
            self._pending_best = None
        if self._unsaved:
            run.save_checkpoint(self._kept_state(), "last")
            self.saved_epoch, self._unsaved = self._kept["epoch"], False
            run.write_meta(epochs_completed=self.saved_epoch)


def _loss_gradient(loss_fn: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """dL/dprediction of a batch: the loss's `gradient` (nn.Loss), else forward then backward
    (a plugin loss that does not subclass nn.Loss)."""
    gradient = getattr(loss_fn, "gradient", None)
    if gradient is not None:
        return gradient
    return lambda prediction, target: (loss_fn(prediction, target), loss_fn.backward())[1]


def _collect_tensors(tree: Any, out: list[Tensor]) -> None:
    """Append the tensors of nested dicts and lists to `out`, depth first."""
    if isinstance(tree, Tensor):
        out.append(tree)
    elif isinstance(tree, dict):
        for value in tree.values():
            _collect_tensors(value, out)
    elif isinstance(tree, list):
        for value in tree:
            _collect_tensors(value, out)


def _with_tensors(tree: Any, tensors: Iterator[Tensor]) -> Any:
    """A copy of nested dicts and lists with its tensors replaced, in _collect_tensors's
    order, by the next ones of `tensors`."""
    if isinstance(tree, Tensor):
        return next(tensors)
    if isinstance(tree, dict):
        return {k: _with_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_with_tensors(v, tensors) for v in tree]
    return tree
