"""`minidl train`: one run, a resumed run, a seed group or data-parallel ranks."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from minidl_cli.cli import common
from minidl_cli.cli.common import (
    RUN_PATH,
    check_overrides,
    echo,
    handle_errors,
    imports_done,
)


@contextmanager
def progress_bar(total: int, done: int, enabled: bool,
                 describe: Callable[[dict], str]) -> Iterator[Callable[[dict], None]]:
    """click's progress bar over the epochs on stderr (epoch, the task's metrics from
    `describe`, ETA), as an on_epoch callback; when stderr is not a terminal (a log file, a
    pipe) one line per epoch instead, as Keras and Lightning write to a log. A lost reader
    (a closed pipe or terminal: EPIPE, EIO) points stderr at /dev/null (common.echo's rule)
    and training goes on."""
    if not enabled:
        yield lambda row: None
        return
    if not sys.stderr.isatty():
        yield lambda row: echo(f"epoch {row['epoch']}/{total}: {describe(row)}", err=True)
        return
    bar = click.progressbar(length=total, label="epoch", file=sys.stderr, show_pos=True,
                            item_show_func=lambda row: describe(row) if row else None)

    def safely(draw: Callable[[], None]) -> None:
        try:
            draw()
        except OSError as e:
            if e.errno not in common.LOST_READER:
                raise
            bar.hidden = True
            common.to_devnull(sys.stderr)

    safely(lambda: (bar.__enter__(), bar.update(done)))
    try:
        yield lambda row: safely(lambda: bar.update(1, row))
    finally:
        safely(lambda: bar.__exit__(None, None, None))


@click.command()
@click.argument("args", nargs=-1, metavar="CONFIG [KEY=VALUE]...")
@click.option("--resume", "resume", type=RUN_PATH,
              help="Continue a run from its last.pt; given a seed group or a sweep, finish "
                   "every member that is not completed.")
@click.option("--seeds", help="One run per seed in a group directory: 0-19, or 0,3,5.")
@click.option("--sweep", "sweep", multiple=True, metavar="KEY=V1,V2,...",
              help="One point per combination of the listed values (repeatable), each a run "
                   "(or a seed group with --seeds) in one sweep directory.")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="With --sweep KEY=log(lo,hi) / interval(lo,hi) / int(lo,hi) / "
                   "choice(a,b): this many points drawn by Optuna, optimising the "
                   "validation metric (pip install 'minidl[sweep]').")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="With --seeds, --sweep, or --resume of a sweep or seed group: train this "
                   "many members in parallel processes [default: 1].")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel training in N processes (torch.distributed); "
                   "train.batch_size stays the global batch.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--quiet", "-q", is_flag=True, help="Hide the progress bar.")
@handle_errors
def train(args: tuple[str, ...], resume: Path | None, seeds: str | None,
          sweep: tuple[str, ...], trials: int | None, jobs: int | None, nproc: int,
          print_config: bool, quiet: bool) -> None:
    """Train the network CONFIG describes; print the run directory as the last line.

    \b
    Overrides use dotted keys with YAML values:
      minidl train configs/disk.yaml optimizer.lr=0.05 train.epochs=10 model.6.out_features=2
    Resume an interrupted run (optionally training longer):
      minidl train --resume runs/disk-20260101-120000 train.epochs=800
    Repeat over seeds (a group directory with summary.csv):
      minidl train configs/disk.yaml --seeds 0-19 --jobs 2
    A grid of settings (a sweep directory with summary.csv; compare it with minidl compare):
      minidl train configs/disk.yaml --sweep optimizer.lr=0.01,0.1 --seeds 0-2 --jobs 2
    Data-parallel in 4 processes (the weights of one; or start it with torchrun):
      minidl train configs/disk.yaml --nproc 4
    """
    from minidl_cli.distributed import World

    world = World.from_env()  # set when torchrun (or --nproc) started this process as a rank
    if not print_config and (world is None or world.rank == 0):
        _import_drawing()
    imports_done()  # torch, minidl and matplotlib are in: the garbage collector may walk again
    _check_combinations(args, resume, seeds, jobs, nproc, print_config, world, sweep, trials)
    jobs = jobs or 1
    if world is None and (sweep or _is_collection(resume)):
        return _train_many(args, resume, sweep, seeds, jobs, quiet, trials)
    if world is None:
        opened = _open_run(args, resume, print_config, seeds, jobs, quiet, nproc)
        if opened:
            _train(*opened, quiet)
        return
    _join(world)
    with world:
        if world.rank > 0:
            return _train_replica(world)
        opened = world.lead(lambda: _open_run(args, resume, print_config, seeds, jobs, quiet,
                                              world=world))
        if opened:
            _train(*opened, quiet, world)


def _train_many(args: tuple[str, ...], resume: Path | None, sweep: tuple[str, ...],
                seeds: str | None, jobs: int, quiet: bool, trials: int | None) -> None:
    """A new sweep (or search), or the resume of a sweep or seed group (cli/sweep.py)."""
    from minidl_cli.cli import sweep as many

    if resume is not None:
        return many.resume_many(resume, list(args), jobs, quiet)
    if not args:
        raise click.UsageError("missing CONFIG (a YAML file) for --sweep")
    check_overrides(list(args[1:]))
    return many.train_sweep(Path(args[0]), list(args[1:]), list(sweep), seeds, jobs, quiet,
                            trials)


def _join(world) -> None:
    """Wait for the other ranks; say what for after a while; Ctrl-C or a timeout ends the
    process at once (torch's rendezvous thread cannot be stopped, and would delay exit)."""
    try:
        world.join(notify=lambda message: echo(message, err=True))
    except (TimeoutError, KeyboardInterrupt) as e:
        if isinstance(e, KeyboardInterrupt):
            echo(f"\ninterrupted while rank {world.rank} of {world.size} waited for the "
                 "other ranks; nothing was written", err=True)
        else:
            echo(f"error: {e}", err=True)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(130 if isinstance(e, KeyboardInterrupt) else 2)


def _is_collection(path: Path | None) -> bool:
    """A sweep or a seed group (resumed member by member)."""
    from minidl_cli import seeds, sweeps

    return path is not None and (sweeps.is_sweep(path) or seeds.is_group(path))


def _check_combinations(args: tuple[str, ...], resume: Path | None, seeds: str | None,
                        jobs: int | None, nproc: int, print_config: bool, world,
                        sweep: tuple[str, ...] = (), trials: int | None = None) -> None:
    """A usage error (exit 2) naming both options for every combination that would drop
    one of them silently."""
    conflicts = [
        (trials is not None and not sweep,
         "--trials searches the ranges given with --sweep, e.g. --sweep "
         "'optimizer.lr=log(0.001,1)'; add one"),
        (world is not None and nproc > 1,
         f"--nproc: this process is already rank {world.rank if world else 0} of "
         f"WORLD_SIZE={world.size if world else 0} (torchrun starts the ranks); leave --nproc out"),
        (resume is not None and bool(sweep),
         "--resume finishes what was started; --sweep starts a new sweep: use one of them "
         "(resume a sweep with: minidl train --resume SWEEP_DIR)"),
        (bool(sweep) and (nproc > 1 or world is not None),
         "--sweep does not combine with --nproc or torchrun; train several points at once "
         "with --jobs"),
        (print_config and bool(sweep),
         "--print-config prints one config and trains nothing; --sweep has no effect with it"),
        (resume is not None and seeds is not None,
         "--resume continues one run; --seeds starts a new group of runs: use one of them"),
        (seeds is not None and (nproc > 1 or world is not None),
         "--seeds does not combine with --nproc or torchrun; train several seeds at once "
         "with --jobs"),
        (jobs is not None and seeds is None and not sweep and not _is_collection(resume),
         "--jobs only applies with --seeds, --sweep or --resume of a sweep or seed group (it "
         "trains that many members at once); leave it out, or use --nproc N for one "
         "data-parallel run"),
        (print_config and seeds is not None,
         "--print-config prints one config and trains nothing; --seeds has no effect with it"),
        (print_config and nproc > 1,
         "--print-config prints the config and trains nothing; --nproc has no effect with it"),
        (resume is not None and bool(args) and "=" not in args[0],
         f"--resume continues {resume} with the config stored in it; leave out the CONFIG "
         f"argument {args[0] if args else ''!r} (KEY=VALUE overrides such as train.epochs=N "
         "may follow), or start a new run without --resume"),
        (seeds is not None and any(a.split("=", 1)[0] == "seed" for a in args[1:]),
         "--seeds sets each run's seed; the override seed=... would be ignored: leave it out"),
    ]
    problems = [message for clash, message in conflicts if clash]
    if problems:
        raise click.UsageError("\n".join(problems))


def _import_drawing() -> None:
    """matplotlib, for the pictures drawn when training ends, imported while the garbage
    collector is paused (see imports_done)."""
    from minidl_cli.plots.canvas import import_matplotlib

    import_matplotlib()


def _open_run(args: tuple[str, ...], resume: Path | None, print_config: bool,
              seeds: str | None, jobs: int, quiet: bool, nproc: int = 1, world=None):
    """(run, trainer) to train here; None when done (--print-config, --seeds).

    With nproc > 1 the input is checked, then `nproc` ranks of this command train the run
    (distributed.launch) and this process exits with rank 0's exit code.
    """
    from minidl_cli import distributed, experiment
    from minidl_cli.config import dump_yaml, load_config
    from minidl_cli.parts import resolve_device
    from minidl_cli.runs import Run

    if resume is not None:
        overrides = list(args)
        check_overrides(overrides)
        if print_config:  # what the resume would train; nothing locked, nothing written
            click.echo(dump_yaml(experiment.resumed_config(resume, overrides)), nl=False)
            return None
        if nproc > 1:
            Run.open(resume)  # rank 0 checks the rest, as a single process would
            _launch(["--resume", str(resume), *overrides], nproc, quiet)
        return experiment.resume_run(resume, overrides, world)
    if not args:
        raise click.UsageError("missing CONFIG (a YAML file), or pass --resume RUN_DIR")
    config_path, overrides = Path(args[0]), list(args[1:])
    check_overrides(overrides)
    # one run checks the config against its data as it builds it (parts.build_parts)
    config = load_config(config_path, overrides, data=print_config or seeds is not None or
                         nproc > 1)
    if print_config:
        click.echo(dump_yaml(config), nl=False)
        return None
    if seeds is not None:
        from minidl_cli.cli.sweep import train_seeds

        train_seeds(config, seeds, jobs, quiet)
        return None
    if nproc > 1:
        distributed.check_gpus(resolve_device(config["train"]["device"]), nproc)
        _launch(list(args), nproc, quiet)
    return experiment.start_run(config, world)


def _launch(train_args: list[str], nproc: int, quiet: bool) -> None:
    """Run `minidl train *train_args` as `nproc` data-parallel ranks; exit as rank 0 did."""
    from minidl_cli import distributed

    debug = click.get_current_context().find_root().params.get("debug", False)
    argv = [*(["--debug"] if debug else []), "train", *train_args, *(["-q"] if quiet else [])]
    sys.exit(distributed.launch(argv, nproc))


def _train_replica(world) -> None:
    """A data-parallel rank > 0: train rank 0's run in step with it, silently; then exit."""
    from minidl_cli import experiment
    from minidl_cli.distributed import RankLost
    from minidl_cli.train import Diverged, Interrupted, stop_on_signals

    setup = world.follow()
    if setup is None or "error" in setup:  # rank 0 reports the problem
        sys.exit(2 if setup else 0)
    trainer = experiment.join_run(setup["config"], Path(setup["checkpoint"]), world)
    try:
        with stop_on_signals() as flag:
            trainer.fit(trainer.config["train"]["epochs"], should_stop=world.watch(flag))
    except (Diverged, RankLost):  # rank 0 says so (or was lost, and its exit says why)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt) as e:
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))


def _train(run, trainer, quiet: bool, world=None) -> None:
    from minidl_cli import experiment
    from minidl_cli.distributed import RankLost
    from minidl_cli.train import Diverged, Interrupted, stop_on_signals

    epochs = trainer.config["train"]["epochs"]
    last = run.checkpoints / "last.pt"
    try:
        with (stop_on_signals() as flag,
              progress_bar(epochs, trainer.epoch, not quiet, trainer.task.progress) as on_epoch):
            experiment.train_run(run, trainer, on_epoch, world.watch(flag) if world else flag)
    except Diverged as e:
        lr = trainer.config["optimizer"].get("lr")
        example = f", e.g. optimizer.lr={lr / 10:g}" if isinstance(lr, (int, float)) else ""
        _fail(run, f"error: {e}; training stopped (status: failed)\n"
                   f"the last good checkpoint (epoch {trainer.epoch}) stays in {last}\n"
                   f"try a smaller learning rate in a new run{example}")
    except RankLost as e:
        _fail(run, f"error: {e}; training stopped (status: failed)\n"
                   f"{last} holds epoch {_saved_epoch(run)}; resume "
                   f"with: minidl train --resume {run.path} --nproc {world.size}")
    except OSError as e:  # a full disk, a quota, a read-only or failing file system
        nproc = f" --nproc {world.size}" if world else ""
        _fail(run, f"error: cannot write {e.filename or 'a file of the run'} "
                   f"({e.strerror or e}); training stopped (status: failed); {last} holds "
                   f"epoch {_saved_epoch(run)}. Free some space, then resume with: "
                   f"minidl train --resume {run.path}{nproc}")
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        if trainer.epoch >= epochs:  # stopped while drawing the pictures: training is complete
            echo(f"\ninterrupted by {name} while drawing the pictures; training is "
                 f"complete. Redraw them with: minidl plot {run.path}", err=True)
        else:
            echo(f"\ninterrupted by {name} after {trainer.epoch} epoch(s); saved {last}.\n"
                 f"resume with: minidl train --resume {run.path}", err=True)
        echo(run.path)
        sys.exit(128 + signum)
    _report_early_stop(trainer)
    echo(run.path)


def _report_early_stop(trainer) -> None:
    """One line on stderr when train.early_stopping ended the run before train.epochs."""
    monitor = trainer.monitor
    if trainer.epoch < trainer.config["train"]["epochs"] and monitor.should_stop:
        echo(f"stopped early at epoch {trainer.epoch}: {monitor.name} has not improved for "
             f"{monitor.patience} epochs; best.pt keeps epoch {monitor.best_epoch} (evaluate, "
             "predict and sample use it)", err=True)


def _saved_epoch(run) -> int:
    """The epoch last.pt holds, as meta.json records it."""
    return run.read_meta().get("epochs_completed", 0)


def _fail(run, message: str) -> None:
    """A run that failed: the message on stderr, its path on stdout, exit code 1."""
    echo(message, err=True)
    echo(run.path)
    sys.exit(1)
