"""The validation metric a run watches: which epoch was best (best.pt) and, with
`train.early_stopping`, when to stop.

Keras's EarlyStopping and Lightning's rule: an epoch *improves* when its value beats the best
so far by more than `min_delta` (lower for a loss, higher for any other metric); after
`patience` epochs in a row without improvement training stops, so the last epoch trained is
the best epoch plus `patience`. The counter is plain data in the checkpoint, so a resumed
run stops where an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any


class Monitor:
    """The best value so far of one validation metric (`name`, e.g. val_loss) and the epochs
    since it improved; `patience` None never asks to stop (best.pt only)."""

    def __init__(self, name: str = "val_loss", patience: int | None = None,
                 min_delta: float = 0.0):
        self.name, self.patience, self.min_delta = name, patience, min_delta
        self.lower_is_better = name.endswith("_loss")
        self.best = math.inf if self.lower_is_better else -math.inf
        self.best_epoch = 0  # the epoch that reached `best`; 0: none yet
        self.wait = 0  # epochs since the last improvement

    @classmethod
    def from_config(cls, train: dict[str, Any]) -> Monitor:
        """The monitor `train.early_stopping` describes, or best.pt's (val_loss, no stop)."""
        options = train.get("early_stopping")
        if not options:
            return cls()
        return cls(options["monitor"], options["patience"], options["min_delta"])

    def update(self, row: dict[str, float]) -> bool:
        """Take one epoch's metrics row; whether it improved. Rows without the metric (no
        validation split) never improve and never stop a run."""
        if self.name not in row:
            return False
        value = row[self.name]
        if self.lower_is_better:
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.wait = value, int(row["epoch"]), 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """`patience` epochs in a row have not improved."""
        return self.patience is not None and self.wait >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.name, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("monitor", self.name) != self.name:
            return  # another metric was watched before: start counting afresh
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


def kept_row(rows: list[dict[str, float]], train: dict[str, Any]) -> dict[str, float] | None:
    """The metrics row of the model a run keeps (the one evaluate and predict use): with
    `train.early_stopping`, the best epoch's (best.pt), found by replaying the rows through
    the run's Monitor; otherwise the last row. None without rows."""
    if not rows:
        return None
    if not train.get("early_stopping"):
        return rows[-1]
    monitor = Monitor.from_config(train)
    for row in rows:
        monitor.update(row)
    return next((r for r in rows if int(r["epoch"]) == monitor.best_epoch), rows[-1])
