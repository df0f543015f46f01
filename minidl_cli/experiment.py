"""Runs as a user sees them: start one, resume one, evaluate one, redraw its pictures.

The CLI calls these; they return values and raise exceptions, never print.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.config import ConfigError, apply_overrides, dump_yaml, load_yaml, resolve
from minidl_cli.data import reusing_datasets
from minidl_cli.runs import Run, RunError, load_checkpoint, now_iso
from minidl_cli.train import Interrupted, StopFlag, Trainer

if TYPE_CHECKING:
    from minidl_cli.distributed import World

# On resume these may change; anything else would train a different experiment.
RESUMABLE_KEYS = {"train.epochs", "train.checkpoint_every", "train.threads"}


def start_run(config: dict[str, Any], world: World | None = None,
              into: Path | None = None) -> tuple[Run, Trainer]:
    """Build everything first (so a bad config writes nothing), then create the run directory
    (or use `into`, an empty directory made for it: a seed group's member).

    The initial state is saved as an epoch-0 `last.pt` at once, so a run stopped in its first
    epoch (signal, kill -9, divergence) still has a checkpoint that loads and resumes.
    `world`: this is rank 0 of a data-parallel run (distributed.py).
    """
    trainer = Trainer(config, world)
    if world is not None:
        world.check_device(trainer.device)
    # locked until train_run ends
    run = Run.create(Path(config["runs_dir"]), config["name"]) if into is None else Run.adopt(into)
    run.write_config(dump_yaml(config))
    run.write_meta(status="running", seed=config["seed"], device=str(trainer.device),
                   world_size=world.size if world else 1, **trainer.task.describe(),
                   features=list(trainer.dataset.feature_names),
                   data_files=dict(trainer.raw.data_files))
    run.write_metrics([], trainer.columns)
    run.save_checkpoint(trainer.state_dict(), "last")
    return run, trainer


def resume_run(run_dir: Path, overrides: list[str],
               world: World | None = None) -> tuple[Run, Trainer]:
    """Reopen a run at its last checkpoint; only `train.epochs` (and checkpointing) may change.

    The run stays locked for this process until train_run ends: a second process resuming
    it at the same time gets a RunError before it reads or writes anything.
    """
    run = Run.open(run_dir)
    run.lock()
    try:
        check_data_files(run, resuming=True)
        with reusing_datasets():  # resolving and the Trainer share one read of the data
            return _reopen(run, overrides, world)
    except BaseException:
        run.unlock()
        raise


def _reopen(run: Run, overrides: list[str], world: World | None) -> tuple[Run, Trainer]:
    stored = load_yaml(run.config_path)
    raw = apply_overrides(stored, overrides)
    try:
        config = resolve(raw, run.config_path)
    except ConfigError:
        _refuse_changes(run, raw, stored)  # "cannot change model..." says more than its fallout
        raise
    _refuse_changes(run, config, stored)
    path = run.checkpoint_path("last")
    state = load_checkpoint(path)
    trainer = Trainer(config, world)
    if world is not None:
        world.check_device(trainer.device)
    _restore(trainer, state, path)
    if trainer.epoch >= config["train"]["epochs"]:
        raise RunError(f"{run.path} has already trained {trainer.epoch} of "
                       f"{config['train']['epochs']} epochs; pass train.epochs=N with a larger "
                       "N to train longer")
    for folder in (run.path, run.checkpoints, run.plots):  # half-written files of a kill -9
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    run.write_config(dump_yaml(config))
    run.write_metrics(trainer.history, trainer.columns)  # drop rows after the last checkpoint
    run.write_meta(status="running", finished_at=None, epochs_completed=trainer.epoch,
                   resumed_at=now_iso(), argv=sys.argv, world_size=world.size if world else 1)
    return run, trainer


def train_run(run: Run, trainer: Trainer, progress: Callable[[dict], None] | None = None,
              stop: StopFlag | None = None, plots: bool = True) -> None:
    """Fit to `train.epochs`, record the outcome in meta.json, draw the pictures at the end;
    then release the run's lock."""
    try:
        _fit_and_draw(run, trainer, progress, stop, plots)
    finally:
        run.unlock()


def _fit_and_draw(run: Run, trainer: Trainer, progress: Callable[[dict], None] | None,
                  stop: StopFlag | None, plots: bool) -> None:
    try:
        trainer.fit(run, trainer.config["train"]["epochs"], progress, stop)
    except (Interrupted, KeyboardInterrupt):
        run.write_meta(status="interrupted", finished_at=now_iso(),
                       epochs_completed=trainer.saved_epoch)
        raise
    except Exception:  # Diverged, a lost data-parallel rank (distributed.RankLost), a bug
        run.write_meta(status="failed", finished_at=now_iso(),
                       epochs_completed=trainer.saved_epoch)
        raise
    # Completed before the pictures: a signal while drawing them loses no training.
    run.write_meta(status="completed", finished_at=now_iso(), epochs_completed=trainer.epoch)
    if plots:
        draw_plots(run, trainer)


def draw_plots(run: Run, trainer: Trainer) -> list[Path]:
    """The run's pictures (plots.draw_run_plots) from the network's outputs on the test set."""
    from minidl_cli import plots

    _, outputs = trainer.evaluate("test")  # (n_test, num_outputs); the task decodes them
    loss = trainer.config["loss"]
    loss_name = loss.get("type") if isinstance(loss, dict) else loss
    return plots.draw_run_plots(run.plots, trainer.raw, trainer.task, outputs.cpu(),
                                run.metrics_path, loss_name=loss_name)


def join_run(config: dict[str, Any], checkpoint: Path, world: World) -> Trainer:
    """A data-parallel rank > 0: rank 0's config and starting checkpoint; no run directory."""
    trainer = Trainer(config, world)
    _restore(trainer, load_checkpoint(checkpoint), checkpoint)
    return trainer


def load_trainer(run: Run, checkpoint: str = "last") -> tuple[Trainer, dict[str, Any], Path]:
    """A Trainer rebuilt from the run directory alone, holding the chosen checkpoint."""
    path = run.checkpoint_path(checkpoint)
    if checkpoint == "best" and not path.exists():
        raise RunError(f"{run.path} has no best.pt: it is kept only when train.val_fraction > 0; "
                       "use --checkpoint last")
    state = load_checkpoint(path)
    check_data_files(run)
    with reusing_datasets():  # resolving and the Trainer share one read of the data
        config = resolve(load_yaml(run.config_path), run.config_path)
        trainer = Trainer(config)
    _restore(trainer, state, path)
    return trainer, state, path


def _refuse_changes(run: Run, config: dict[str, Any], stored: dict[str, Any]) -> None:
    """RunError when `config` differs from the run's stored config outside RESUMABLE_KEYS."""
    new, old = _flatten(config), _flatten(stored)
    changed = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k))
    refused = [re.sub(r"\.(\d+)", r"[\1]", k) for k in changed if k not in RESUMABLE_KEYS]
    if refused:
        raise RunError(f"cannot change {', '.join(refused)} when resuming {run.path}: the run "
                       "would no longer continue the same experiment; only train.epochs and "
                       "train.checkpoint_every may change (for other settings start a new run: "
                       f"minidl train {run.config_path} KEY=VALUE...)")


def _restore(trainer: Trainer, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint into `trainer`; RunError naming the file when it does not fit."""
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise RunError(f"{path} does not fit this run (its model or training state differs: "
                       f"{type(e).__name__}: {reason}); use a checkpoint this run wrote") from None


def evaluate_run(run_dir: Path, checkpoint: str = "last") -> dict[str, Any]:
    """The loss and the task's evaluation (classification: accuracy, error, confusion
    matrix; regression: mae, rmse, r2) on train and test; written to eval.json."""
    import torch

    run = Run.open(run_dir)
    trainer, state, path = load_trainer(run, checkpoint)
    result: dict[str, Any] = {"checkpoint": str(path), "epoch": state["epoch"],
                              **trainer.task.describe()}
    with torch.no_grad():
        for split in ("train", "test"):
            loss, outputs = trainer.evaluate(split)
            result[split] = {"loss": loss,
                             **trainer.task.evaluation(outputs, trainer.splits[split].y)}
    run.write_json("eval.json", result)
    return result


def evaluate_file(run_dir: Path, data: Path, checkpoint: str = "last") -> dict[str, Any]:
    """A checkpoint on another labelled file (the training columns and the label), read
    as `predict` reads: from the checkpoint, without the training data. Written to
    eval-<file stem>.json in the run."""
    from minidl_cli.predict import load

    predictor = load(run_dir, checkpoint)
    result: dict[str, Any] = {"checkpoint": str(predictor.checkpoint), "epoch": predictor.epoch,
                              **predictor.task.describe(), "data": str(Path(data).absolute()),
                              "file": predictor.evaluate(data)}
    Run.open(run_dir).write_json(f"eval-{Path(data).stem}.json", result)
    return result


def check_data_files(run: Run, resuming: bool = False) -> None:
    """RunError when a file the run was trained on has changed or is gone since (meta.json's
    `data_files`: path -> SHA-256), naming the file and what to do instead."""
    from minidl_cli.data.files import changed_files

    recorded = run.read_meta().get("data_files") or {}
    for path in changed_files(recorded):
        what = "has changed" if Path(path).exists() else "is gone"
        if resuming:
            instead = "to train on the data as it is now, start a new run (minidl train CONFIG)"
        else:
            instead = (f"evaluate on a file as new data with: minidl evaluate {run.path} "
                       f"--data FILE (minidl predict {run.path} FILE needs no training data)")
        raise RunError(f"{path} {what} since {run.path} was trained on it (its SHA-256 is not "
                       f"meta.json's data_files'), so its train/test split cannot be rebuilt; "
                       f"{instead}")


def replot_run(run_dir: Path) -> list[Path]:
    """Redraw a run's pictures from its last checkpoint."""
    import torch

    run = Run.open(run_dir)
    trainer, _, _ = load_trainer(run)
    with torch.no_grad():
        return draw_plots(run, trainer)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree)
                for k, v in _flatten(value, f"{prefix}{i}.").items()}
    return {prefix[:-1]: tree}
