"""Runs as a user sees them: start one, resume one, evaluate one, redraw its pictures.

The CLI calls these; they return values and raise exceptions, never print.
"""

from __future__ import annotations

import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.checkpointer import Checkpointer
from minidl_cli.config import ConfigError, apply_overrides, dump_yaml, load_yaml, resolve
from minidl_cli.config.plugins import import_plugins
from minidl_cli.runs import (
    Run,
    RunError,
    RunWarning,
    RunWriteError,
    default_checkpoint,
    load_checkpoint,
    now_iso,
)
from minidl_cli.train import Interrupted, StopFlag, Trainer

if TYPE_CHECKING:
    from minidl_cli.distributed import World

# On resume these may change; anything else would train a different experiment. So may
# a scheduler's length options (epoch_options: cosine's T_max), which follow train.epochs.
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
    try:
        run.write_config(dump_yaml(config))
        run.write_meta(status="running", seed=config["seed"], device=str(trainer.device),
                       world_size=world.size if world else 1, **trainer.task.describe(),
                       features=list(trainer.dataset.feature_names),
                       data_files=dict(trainer.raw.data_files))
        run.write_metrics([], trainer.columns)
        run.save_checkpoint(trainer.state_dict(), "last")
    except OSError as e:  # a full disk: leave no half-made run behind
        run.unlock()
        if into is None:
            shutil.rmtree(run.path, ignore_errors=True)
        raise RunWriteError(f"cannot write {e.filename or run.path}: {e.strerror or e}; the run "
                            f"directory {run.path} was not kept; free some space (or choose "
                            "another runs_dir=DIR) and train again") from None
    return run, trainer


def resume_run(run_dir: Path, overrides: list[str], world: World | None = None,
               collection: bool = True) -> tuple[Run, Trainer]:
    """Reopen a run at its last checkpoint; only `train.epochs` (and checkpointing) may change.

    The run stays locked for this process until train_run ends: a second process resuming
    it at the same time gets a RunError before it reads or writes anything. So does the
    sweep or seed group holding it (Run.lock), unless `collection` is False: the
    collection's own resume, which holds that lock already, resumes its members so.
    """
    run = Run.open(run_dir)
    run.check_writable("resume it")
    run.lock(collection)
    try:
        check_data_files(run, resuming=True)
        return _reopen(run, overrides, world)
    except BaseException:
        run.unlock()
        raise


def resumed_config(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The config `resume_run(run_dir, overrides)` would train; nothing locked or written.

    Raises what resume_run raises for a missing run, a bad or refused override.
    """
    run = Run.open(run_dir)
    return _resumed(run, overrides, lambda raw: resolve(raw, run.config_path))


def _resumed(run: Run, overrides: list[str], build: Callable[[dict], Any]) -> Any:
    """build(the stored config with `overrides`): a resolved config, or a Trainer checked
    against its data; RunError when a setting other than RESUMABLE_KEYS changes."""
    stored = load_yaml(run.config_path)
    raw = apply_overrides(stored, overrides)
    try:
        built = build(raw)
    except ConfigError:
        _refuse_changes(run, raw, stored, overrides)  # says more than its fallout
        raise
    _refuse_changes(run, getattr(built, "config", built), stored, overrides)
    return built


def _reopen(run: Run, overrides: list[str], world: World | None) -> tuple[Run, Trainer]:
    path = run.checkpoint_path("last")
    state = load_checkpoint(path)
    trainer = _resumed(run, overrides, lambda raw: Trainer(
        resolve(raw, run.config_path, data=False), world))  # the Trainer checks the data
    config = trainer.config
    if world is not None:
        world.check_device(trainer.device)
    _restore(trainer, state, path)
    if trainer.stopped_early:
        raise RunError(f"{run.path} stopped early at epoch {trainer.epoch} (train.early_stopping: "
                       f"{trainer.monitor.name} last improved in epoch "
                       f"{trainer.monitor.best_epoch}); there is nothing to resume: start a new "
                       "run to train with other settings")
    if trainer.epoch >= config["train"]["epochs"]:
        raise RunError(f"{run.path} has already trained {trainer.epoch} epochs, and "
                       f"train.epochs is {config['train']['epochs']}: nothing to resume; pass "
                       f"train.epochs=N with N > {trainer.epoch} to train longer")
    _warn_if_schedule_ends(config, load_yaml(run.config_path))
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
    checkpointer = Checkpointer(run, trainer.config["train"]["checkpoint_every"],
                                saved_epoch=trainer.epoch)
    try:
        trainer.fit(trainer.config["train"]["epochs"], checkpointer, progress, stop)
    except (Interrupted, KeyboardInterrupt):
        _record_end(run, "interrupted", checkpointer.saved_epoch)
        raise
    except Exception:  # Diverged, a lost rank (distributed.RankLost), a full disk, a bug
        _record_end(run, "failed", checkpointer.saved_epoch)
        raise
    # Completed before the pictures: a signal while drawing them loses no training.
    early = ({"stopped_early_at": trainer.epoch, "best_epoch": trainer.monitor.best_epoch}
             if trainer.stopped_early else {})
    run.write_meta(status="completed", finished_at=now_iso(), epochs_completed=trainer.epoch,
                   **early)
    warn_if_not_learning(run, trainer)
    if plots:  # nothing after training turns a completed run into a failed one
        try:
            draw_plots(run, trainer)
        except Interrupted:  # a signal while drawing: the CLI says the run is complete
            raise
        except Exception as e:
            reason = (str(e).splitlines() or [""])[0][:200]
            warnings.warn(RunWarning(
                f"the pictures could not be drawn ({type(e).__name__}: {reason}); training is "
                f"complete. Redraw them with: minidl plot {run.path}"), stacklevel=2)
    if trainer.task.name == "language_model":
        try:
            write_samples(run, trainer)
        except Interrupted:
            raise
        except Exception as e:
            reason = (str(e).splitlines() or [""])[0][:200]
            warnings.warn(RunWarning(
                f"samples.txt could not be written ({type(e).__name__}: {reason}); training is "
                f"complete. Sample with: minidl sample {run.path}"), stacklevel=2)


SAMPLES = 10  # samples.txt: items of a lines run; a stream run's text is 500 tokens


def write_samples(run: Run, trainer: Trainer) -> Path:
    """samples.txt in the run directory: text sampled from the trained language model
    (sampling.generate, seeded with the run's seed): SAMPLES items, one per line, for a
    `lines` run; one text for a `stream` run."""
    from minidl_cli.runs import atomic_write
    from minidl_cli.sampling import generate

    was_training = trainer.model.training
    trainer.model.eval()
    try:
        texts = generate(trainer.model, trainer.task,
                         SAMPLES if trainer.task.mode == "lines" else 1,
                         seed=trainer.config["seed"])
    finally:
        trainer.model.train(was_training)
    path = run.path / "samples.txt"
    atomic_write(path, ("\n".join(texts) + "\n").encode())
    return path


def _record_end(run: Run, status: str, epochs: int) -> None:
    """meta.json's status at the end of training; a full disk must not hide the real error."""
    try:
        run.write_meta(status=status, finished_at=now_iso(), epochs_completed=epochs)
    except OSError:
        pass


JUDGE_AFTER_EPOCHS = 10  # a shorter run (a smoke test) may not have improved yet
JUDGE_SCORE_AFTER_EPOCHS = 10  # the final score against a constant guess: as long (a 6-epoch
# Adam run on 200 points can still sit at the majority class: not learnt yet, not failed)
CHANCE_MARGIN = 0.01  # accuracy within 1 point of always guessing the commonest class


def warn_if_not_learning(run: Run, trainer: Trainer) -> None:
    """RunWarning when the network did not learn (a learning rate far too large saturates it):
    no epoch after the first lowered the training loss over JUDGE_AFTER_EPOCHS epochs, or,
    after JUDGE_SCORE_AFTER_EPOCHS epochs whose loss rose at least once, the final training
    score is no better than a constant guess (accuracy ≤ the most frequent training class's
    share + CHANCE_MARGIN; R² ≤ 0). A loss falling steadily but slowly is not warned about,
    nor a run whose loss reached 0 or whose training accuracy is 100%."""
    losses = [row["train_loss"] for row in trainer.history]
    if losses and (min(losses) <= 0 or trainer.history[-1].get("train_accuracy") == 1):
        return  # learnt at once: a loss at 0 cannot fall, nor a perfect score rise
    reason = None
    if len(losses) >= JUDGE_AFTER_EPOCHS and min(losses[1:]) >= losses[0]:
        reason = (f"the training loss never fell below its first epoch's ({losses[0]:.4g}) in "
                  f"{len(losses)} epochs")
    elif len(losses) >= JUDGE_SCORE_AFTER_EPOCHS and any(
            b > a for a, b in zip(losses, losses[1:], strict=False)):
        reason = _no_better_than_constant(trainer)  # unsteady: not merely slow (lr too small)
    if reason is None:
        return
    lr = trainer.config["optimizer"].get("lr")
    example = f" (e.g. optimizer.lr={lr / 10:g})" if isinstance(lr, (int, float)) and lr else ""
    warnings.warn(RunWarning(
        f"{reason}: the network did not learn; lower optimizer.lr{example}, or train for "
        "more epochs"), stacklevel=2)


def _no_better_than_constant(trainer: Trainer) -> str | None:
    """Why the final training score is no better than a constant guess, or None."""
    row, epochs = trainer.history[-1], len(trainer.history)
    if "train_accuracy" in row:
        import torch

        y = trainer.dataset.y_train.reshape(-1).long()
        y = y[y >= 0]  # a label < 0 is no prediction (a text's padding: ignore_index -100)
        majority = torch.bincount(y).max().item() / len(y) if len(y) else 0.0
        if row["train_accuracy"] <= majority + CHANCE_MARGIN:
            return (f"after {epochs} epochs the training accuracy ({row['train_accuracy']:.1%}) "
                    f"is no better than always predicting the most frequent class "
                    f"({majority:.1%})")
    elif "train_r2" in row and not row["train_r2"] > 0:
        return (f"after {epochs} epochs the training R² ({row['train_r2']:.3f}) is no better "
                "than always predicting the mean")
    return None


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
    import_plugins(config["plugins"], Path.cwd())  # as rank 0 did while resolving the config
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
    config = resolve(load_yaml(run.config_path), run.config_path, data=False)
    trainer = Trainer(config)  # checks the config against the data it reads
    _restore(trainer, state, path)
    return trainer, state, path


def _refuse_changes(run: Run, config: dict[str, Any], stored: dict[str, Any],
                    overrides: list[str] = ()) -> None:
    """RunError when `config` differs from the run's stored config outside RESUMABLE_KEYS.
    A key the stored config lacks and no override sets is an option added to minidl since
    the run was made, at its default: no change."""
    new, old = _flatten(config), _flatten(stored)
    given = {re.sub(r"\[(\d+)\]", r".\1", o.partition("=")[0].strip())  # model[0].x
             for o in overrides}  # as the override sets it: model.0.x
    changed = sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k)
                     and (k in old or any(k == g or k.startswith(g + ".") for g in given)))
    allowed = RESUMABLE_KEYS | _schedule_length_keys(config, stored)
    refused = [re.sub(r"\.(\d+)", r"[\1]", k) for k in changed if k not in allowed]
    if refused:
        raise RunError(f"cannot change {', '.join(refused)} when resuming {run.path}: the run "
                       "would no longer continue the same experiment; only "
                       f"{', '.join(sorted(allowed))} may change (for other settings start a "
                       f"new run: minidl train {run.config_path} KEY=VALUE...)")


def _warn_if_schedule_ends(config: dict[str, Any], stored: dict[str, Any]) -> None:
    """RunWarning when an extended run trains past a schedule length the user set (cosine's
    T_max: 4, then train.epochs=6): its learning rate reaches eta_min, then restarts."""
    scheduler, epochs = config.get("scheduler"), config["train"]["epochs"]
    before = stored.get("train", {}).get("epochs", epochs)
    for key in sorted(k.split(".", 1)[1] for k in _schedule_length_keys(config, stored)):
        length = scheduler.get(key)
        if isinstance(length, int) and before <= length < epochs:
            warnings.warn(RunWarning(
                f"scheduler.{key} is {length} but the run now trains {epochs} epochs: its "
                f"schedule ends at epoch {length} and restarts after it; pass "
                f"scheduler.{key}={epochs} to stretch it over the whole run"), stacklevel=2)


def _schedule_length_keys(config: dict[str, Any], stored: dict[str, Any]) -> set[str]:
    """scheduler.T_max and the like: a schedule's length, which may change with train.epochs
    (only while the scheduler's type stays the same)."""
    from minidl_cli import registry

    new, old = config.get("scheduler"), stored.get("scheduler")
    if not isinstance(new, dict) or not isinstance(old, dict) or new.get("type") != old.get("type"):
        return set()
    try:
        target = registry.lookup("scheduler", new["type"]).target
    except ValueError:
        return set()
    return {f"scheduler.{key}" for key in getattr(target, "epoch_options", ())}


def _restore(trainer: Trainer, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint into `trainer`; RunError naming the file when it does not fit."""
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise RunError(f"{path} does not fit this run (its model or training state differs: "
                       f"{type(e).__name__}: {reason}); use a checkpoint this run wrote") from None


def evaluate_run(run_dir: Path, checkpoint: str | None = None, out: Path | None = None,
                 *, printed: bool = False) -> dict[str, Any]:
    """The loss and the task's evaluation (classification: accuracy, error, confusion
    matrix; regression: mae, rmse, r2) on train and test; written to eval.json (or `out`).
    A file that cannot be written (a read-only run) is a RunWarning: the results are
    returned all the same. `printed`: the caller prints them in full (JSON), so the
    warning does not suggest doing that."""
    import torch

    run = Run.open(run_dir)
    trainer, state, path = load_trainer(run, checkpoint or default_checkpoint(run.path))
    result: dict[str, Any] = {"checkpoint": str(path), "epoch": state["epoch"],
                              **trainer.task.describe()}
    with torch.no_grad():
        for split in ("train", "test"):
            loss, outputs = trainer.evaluate(split)
            result[split] = {"loss": loss,
                             **trainer.task.evaluation(outputs, trainer.splits[split].y)}
    _save_eval(run, "eval.json", result, out, printed)
    return result


def evaluate_file(run_dir: Path, data: Path, checkpoint: str | None = None,
                  out: Path | None = None, shown: str | None = None, *,
                  printed: bool = False) -> dict[str, Any]:
    """A checkpoint on another labelled file (the training columns and the label), read
    as `predict` reads: from the checkpoint, without the training data. Written to
    eval-<file stem>.json in the run (or `out`; a RunWarning when it cannot be). `shown`:
    what to call the data when `data` is a copy of it (files.readable_file; `<stdin>`
    is saved as eval-stdin.json); `printed` as evaluate_run."""
    from minidl_cli.data.files import STDIN_NAME
    from minidl_cli.predict import load

    predictor = load(run_dir, checkpoint or default_checkpoint(Run.open(run_dir).path))
    name = shown if shown is not None and shown != str(data) else str(Path(data).absolute())
    stem = "stdin" if name == STDIN_NAME else Path(name).stem
    result: dict[str, Any] = {"checkpoint": str(predictor.checkpoint), "epoch": predictor.epoch,
                              **predictor.task.describe(), "data": name,
                              "file": predictor.evaluate(data)}
    _save_eval(Run.open(run_dir), f"eval-{stem}.json", result, out, printed)
    return result


def _save_eval(run: Run, filename: str, result: dict[str, Any], out: Path | None,
               printed: bool = False) -> None:
    """The results into the run's `filename` (or `out`); a RunWarning, not an error, when
    they cannot be written (a read-only run, a full disk): they were computed all the same."""
    from minidl_cli.runs import write_json_atomic

    target = Path(out) if out is not None else run.path / filename
    try:
        write_json_atomic(target, result)
    except OSError as e:
        warnings.warn(RunWarning(
            f"could not write {target} ({e.strerror or e}); the results are not saved: "
            + ("" if printed else "print them as JSON with --json, or ")
            + "write them elsewhere with --out FILE"), stacklevel=3)


def check_data_files(run: Run, resuming: bool = False) -> None:
    """RunError when a file the run was trained on has changed or is gone since (meta.json's
    `data_files`: path -> SHA-256), naming the file and what to do instead."""
    from minidl_cli.data.files import changed_files, describe_change

    recorded = run.read_meta().get("data_files") or {}
    for path in changed_files(recorded):
        what = describe_change(path, recorded)
        if resuming:
            instead = "to train on the data as it is now, start a new run (minidl train CONFIG)"
        elif run.read_meta().get("task") == "language_model":
            instead = (f"sample from it with: minidl sample {run.path}, or evaluate it on a "
                       f"text with: minidl evaluate {run.path} --data FILE (neither needs "
                       "the training text)")
        elif run.read_meta().get("features") == []:  # images: no table columns
            instead = (f"predict new images with: minidl predict {run.path} IMAGE|FOLDER|NPZ "
                       "(it needs no training data)")
        else:
            instead = (f"evaluate on a file as new data with: minidl evaluate {run.path} "
                       f"--data FILE (minidl predict {run.path} FILE needs no training data)")
        digest = "file listing" if recorded[path].startswith("listing:") else "SHA-256"
        why = "" if what == "is gone" else f" (its {digest} is not meta.json's data_files')"
        raise RunError(f"{path} {what} since {run.path} was trained on it{why}, so its "
                       f"train/test split cannot be rebuilt; {instead}")


def replot_run(run_dir: Path) -> list[Path]:
    """Redraw a run's pictures from its last checkpoint."""
    import torch

    run = Run.open(run_dir)
    run.check_writable("redraw its pictures", f"draw its curves elsewhere: minidl plot "
                       f"{run.path} --out DIR")
    trainer, _, _ = load_trainer(run)
    with torch.no_grad():
        return draw_plots(run, trainer)


def replot_sweep(sweep: Path, out: Path | None = None) -> list[Path]:
    """Redraw a sweep: each point's pictures (a run's, or a seed group's mean curves with
    their bands, into the point's plots/), then the default metric against each swept key
    (as `minidl compare --out`) into the sweep's plots/. Given `out`, only the latter, into
    `out`: nothing inside the sweep is written. Points not run yet are skipped."""
    from minidl_cli import compare, plots, seeds, sweeps

    paths: list[Path] = []
    for point in sweeps.point_dirs(sweep) if out is None else ():
        if seeds.is_group(point):
            members = [m for m in seeds.member_dirs(point) if (m / "metrics.csv").is_file()]
            if members:
                paths += plots.plot_group(members, point / "plots")
        elif (point / "checkpoints" / "last.pt").is_file():
            paths += replot_run(point)
    entries = compare.collect([sweep])
    if entries:
        metric = compare.default_metric(entries[0].task)
        rows = compare.table(entries, metric)
        paths += compare.draw(rows, compare.varied_keys(entries), metric,
                              out or sweep / "plots")
    return paths


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree)
                for k, v in _flatten(value, f"{prefix}{i}.").items()}
    return {prefix[:-1]: tree}
