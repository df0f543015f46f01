"""What a run keeps on disk, and when: the Checkpointer beside the training loop.

After each epoch `epoch_done` appends the metrics row to metrics.csv and *keeps* the
trainer's state (a copy, cheap: one foreach copy into the tensors kept the epoch before);
`checkpoints/last.pt` is written from the kept state at most every SAVE_EVERY_S seconds,
at the last epoch and when training stops for any reason (`close`), so that last.pt always
holds a completed epoch and a resumed run ends bit-identical to an uninterrupted one.
`best.pt` (validation runs) gets the state of the epoch with the lowest validation loss,
`epoch_NNNN.pt` every `train.checkpoint_every` epochs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from minidl_cli.runs import Run
    from minidl_cli.train import Trainer

SAVE_EVERY_S = 1.0  # write last.pt at most this often: a checkpoint write (torch.save, fsync,
# rename) costs as much as an epoch of the reference network; a kill -9 loses at most this
COPIED = ("model", "optimizer")  # the parts of a state whose tensors change in place


class Checkpointer:
    """Owns what is on disk (last.pt, best.pt, epoch_NNNN.pt, metrics.csv, meta.json's
    epochs_completed) against what is kept in memory for the next write."""

    def __init__(self, run: Run, every: int = 0, saved_epoch: int = 0):
        self.run, self.every = run, every
        self.saved_epoch = saved_epoch  # the epoch last.pt holds
        self._kept: dict[str, Any] | None = None  # the last completed epoch's state
        self._copies: list[Tensor] | None = None  # its tensors, reused from epoch to epoch
        self._best: dict[str, Any] | None = None  # best.pt's state, until written
        self._written = time.perf_counter()

    def epoch_done(self, trainer: Trainer, improved: bool, final: bool) -> None:
        """Record the epoch just completed: its metrics line, its state kept; best.pt's
        state when it `improved` the validation loss; epoch_NNNN.pt now when due; last.pt
        when SAVE_EVERY_S have passed since the last write, or when this is the `final`
        epoch."""
        self.run.append_metrics(trainer.history, trainer.columns)
        self.keep(trainer.state_dict())
        if improved:
            self._best, self._copies = self._kept, None  # the next epoch copies elsewhere
        if self.every and trainer.epoch % self.every == 0:
            self.run.save_checkpoint(self._kept, str(trainer.epoch))
        if final or time.perf_counter() - self._written >= SAVE_EVERY_S:
            self.write()

    def keep(self, state: dict[str, Any]) -> None:
        """Keep `state` as it is now: its model and optimizer tensors copied (into the
        previous kept state's copies when they are free and alike), the history by a list
        of its rows (rows never change once appended)."""
        tensors = [t for part in COPIED for t in _tensors(state[part])]
        copies = self._copies
        if copies is None or [(t.shape, t.dtype, t.device) for t in copies] != [
                (t.shape, t.dtype, t.device) for t in tensors]:
            copies = self._copies = [t.clone() for t in tensors]
        else:
            for copy, tensor in zip(copies, tensors, strict=True):
                copy.copy_(tensor)
        it = iter(copies)
        self._kept = {**state, "history": list(state["history"]), "extra": dict(state["extra"]),
                      **{part: _with_tensors(state[part], it) for part in COPIED}}

    def write(self) -> None:
        """Write best.pt and last.pt from the kept states, if newer than on disk."""
        if self._best is not None:
            self.run.save_checkpoint(self._best, "best")
            self._best = None
        kept = self._kept
        if kept is not None and kept["epoch"] != self.saved_epoch:
            self.run.save_checkpoint(kept, "last")
            self.saved_epoch = kept["epoch"]
            self.run.write_meta(epochs_completed=self.saved_epoch)
        self._written = time.perf_counter()

    def close(self) -> None:
        """Training stopped (done, interrupted, diverged or failed): write what is kept."""
        try:
            self.write()
        finally:
            self.run.close()


def copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with its model and optimizer tensors cloned and its history listed anew."""
    copies = (t.clone() for part in COPIED for t in _tensors(state[part]))
    return {**state, "history": list(state["history"]),
            **{part: _with_tensors(state[part], copies) for part in COPIED}}


def _tensors(tree: Any) -> Iterator[Tensor]:
    """The tensors of nested dicts and lists, depth first."""
    if isinstance(tree, Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _tensors(value)


def _with_tensors(tree: Any, tensors: Iterator[Tensor]) -> Any:
    """A copy of nested dicts and lists with its tensors replaced, in _tensors's order, by
    the next ones of `tensors`."""
    if isinstance(tree, Tensor):
        return next(tensors)
    if isinstance(tree, dict):
        return {k: _with_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_with_tensors(v, tensors) for v in tree]
    return tree
