"""The `minidl` command line: parse, call one library function, print.

torch is imported lazily inside commands so `minidl --help` and `--version` stay instant.
Errors a user can cause exit with code 2 and one line per problem; a failed run exits 1;
SIGINT / SIGTERM save the run and exit 130 / 143.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import click

from minidl_cli import __version__

CONFIG_PATH = click.Path(path_type=Path, dir_okay=False)
RUN_PATH = click.Path(path_type=Path, file_okay=False)


class UserError(click.ClickException):
    """Bad input: printed as 'error: ...' lines, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        for line in self.message.splitlines():
            click.echo(f"error: {line}", err=True)


def handle_errors(command):
    """Turn the library's exceptions into exit codes and short messages (tracebacks: --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from minidl_cli.config import ConfigError
        from minidl_cli.runs import RunError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except (ConfigError, RunError, ValueError, FileNotFoundError, ImportError) as e:
            if debug:
                traceback.print_exc()
            raise UserError(str(e) or type(e).__name__) from None
        except OSError as e:
            if debug:
                traceback.print_exc()
            raise UserError(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own): 130
            if debug:
                traceback.print_exc()
            click.echo("\ninterrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="minidl")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
def main(debug: bool) -> None:
    """minidl: train hand-written-backprop networks described in YAML, into run directories.

    \b
    Quick start:
      minidl train configs/disk.yaml          train the reference experiment
      minidl evaluate runs/disk-...           evaluate its last checkpoint
      minidl plot runs/disk-...               redraw its pictures
    """


# --- train ----------------------------------------------------------------------------


class Progress:
    """A throttled one-line progress bar on stderr: epoch, loss, accuracy, ETA."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.total, self.first = total, done
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.started = self.last = time.perf_counter()

    def __call__(self, row: dict) -> None:
        if not self.enabled:
            return
        now, epoch = time.perf_counter(), int(row["epoch"])
        final = epoch == self.total
        interval = 0.1 if self.tty else 5.0
        if now - self.last < interval and not final:
            return
        self.last = now
        rate = (now - self.started) / max(epoch - self.first, 1)
        eta = rate * (self.total - epoch)
        width = 20
        filled = int(width * epoch / self.total)
        line = (f"epoch {epoch:>{len(str(self.total))}}/{self.total} "
                f"[{'#' * filled}{'.' * (width - filled)}] "
                f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.1%} "
                f"test {row['test_accuracy']:.1%} ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        if self.tty:
            click.echo("\r" + line, err=True, nl=final)
        else:
            click.echo(line, err=True)


@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM set a flag the loop polls; a second signal stops at once."""
    from minidl_cli.train import Interrupted, StopFlag

    flag = StopFlag()

    def handler(signum, frame):
        if flag.signum is not None:
            raise Interrupted(signum)
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@main.command()
@click.argument("args", nargs=-1, metavar="CONFIG [KEY=VALUE]...")
@click.option("--resume", "resume", type=RUN_PATH, help="Continue a run from its last.pt.")
@click.option("--seeds", help="One run per seed in a group directory: 0-19, or 0,3,5.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --seeds: train this many seeds in parallel processes.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel training in N processes (torch.distributed); "
                   "train.batch_size stays the global batch.")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--quiet", "-q", is_flag=True, help="Hide the progress bar.")
@handle_errors
def train(args: tuple[str, ...], resume: Path | None, seeds: str | None, jobs: int,
          nproc: int, print_config: bool, quiet: bool) -> None:
    """Train the network CONFIG describes; print the run directory as the last line.

    \b
    Overrides use dotted keys with YAML values:
      minidl train configs/disk.yaml optimizer.lr=0.05 train.epochs=10 model.6.out_features=2
    Resume an interrupted run (optionally training longer):
      minidl train --resume runs/disk-20260101-120000 train.epochs=800
    Repeat over seeds (a group directory with summary.csv):
      minidl train configs/disk.yaml --seeds 0-19 --jobs 2
    Data-parallel in 4 processes (the weights of one; or start it with torchrun):
      minidl train configs/disk.yaml --nproc 4
    """
    from minidl_cli.distributed import World

    world = World.from_env()  # set when torchrun (or --nproc) started this process as a rank
    if world is not None and nproc > 1:
        raise click.UsageError(f"--nproc: this process is already rank {world.rank} of "
                               f"WORLD_SIZE={world.size} (torchrun starts the ranks); "
                               "leave --nproc out")
    if seeds is not None and (nproc > 1 or world is not None):
        raise click.UsageError("--seeds does not combine with --nproc or torchrun; train "
                               "several seeds at once with --jobs")
    if world is None:
        opened = _open_run(args, resume, print_config, seeds, jobs, quiet, nproc)
        if opened:
            _train(*opened, quiet)
        return
    with world:
        if world.rank > 0:
            return _train_replica(world)
        opened = world.lead(lambda: _open_run(args, resume, print_config, seeds, jobs, quiet,
                                              world=world))
        if opened:
            _train(*opened, quiet, world)


def _open_run(args: tuple[str, ...], resume: Path | None, print_config: bool,
              seeds: str | None, jobs: int, quiet: bool, nproc: int = 1, world=None):
    """(run, trainer) to train here; None when done (--print-config, --seeds).

    With nproc > 1 the input is checked, then `nproc` ranks of this command train the run
    (distributed.launch) and this process exits with rank 0's exit code.
    """
    from minidl_cli import distributed, experiment
    from minidl_cli.config import dump_yaml, load_config
    from minidl_cli.runs import Run
    from minidl_cli.train import resolve_device

    if resume is not None:
        overrides = list(args)
        _check_overrides(overrides)
        if nproc > 1:
            Run.open(resume)  # rank 0 checks the rest, as a single process would
            _launch(["--resume", str(resume), *overrides], nproc, quiet)
        return experiment.resume_run(resume, overrides, world)
    if not args:
        raise click.UsageError("missing CONFIG (a YAML file), or pass --resume RUN_DIR")
    config_path, overrides = Path(args[0]), list(args[1:])
    _check_overrides(overrides)
    config = load_config(config_path, overrides)
    if print_config:
        click.echo(dump_yaml(config), nl=False)
        return None
    if seeds is not None:
        _train_seeds(config, seeds, jobs, quiet)
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
    from minidl_cli.train import Diverged, Interrupted

    setup = world.follow()
    if setup is None or "error" in setup:  # rank 0 reports the problem
        sys.exit(2 if setup else 0)
    trainer = experiment.join_run(setup["config"], Path(setup["checkpoint"]), world)
    try:
        with stop_on_signals() as flag:
            trainer.fit(None, trainer.config["train"]["epochs"], None, world.watch(flag))
    except (Diverged, RankLost):  # rank 0 says so (or was lost, and its exit says why)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt) as e:
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))


def _check_overrides(overrides: list[str]) -> None:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError("\n".join(f"override {o!r}: expected KEY=VALUE, e.g. optimizer.lr=0.05"
                                  for o in bad))


def _train(run, trainer, quiet: bool, world=None) -> None:
    from minidl_cli import experiment
    from minidl_cli.distributed import RankLost
    from minidl_cli.train import Diverged, Interrupted

    epochs = trainer.config["train"]["epochs"]
    progress = Progress(epochs, trainer.epoch, enabled=not quiet)
    try:
        with stop_on_signals() as flag:
            experiment.train_run(run, trainer, progress, world.watch(flag) if world else flag)
    except Diverged as e:
        lr = trainer.config["optimizer"].get("lr")
        example = f", e.g. optimizer.lr={lr / 10:g}" if isinstance(lr, (int, float)) else ""
        click.echo(f"error: {e}; training stopped (status: failed)\n"
                   f"the last good checkpoint (epoch {trainer.epoch}) stays in "
                   f"{run.checkpoints / 'last.pt'}\n"
                   f"try a smaller learning rate in a new run{example}", err=True)
        click.echo(run.path)
        sys.exit(1)
    except RankLost as e:
        click.echo(f"error: {e}; training stopped (status: failed)\n"
                   f"{run.checkpoints / 'last.pt'} holds epoch {trainer.saved_epoch}; resume "
                   f"with: minidl train --resume {run.path} --nproc {world.size}", err=True)
        click.echo(run.path)
        sys.exit(1)
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        if trainer.epoch >= epochs:  # stopped while drawing the pictures: training is complete
            click.echo(f"\ninterrupted by {name} while drawing the pictures; training is "
                       f"complete. Redraw them with: minidl plot {run.path}", err=True)
        else:
            click.echo(f"\ninterrupted by {name} after {trainer.epoch} epoch(s); saved "
                       f"{run.checkpoints / 'last.pt'}.\n"
                       f"resume with: minidl train --resume {run.path}", err=True)
        click.echo(run.path)
        sys.exit(128 + signum)
    click.echo(run.path)


def _train_seeds(config: dict, seeds_text: str, jobs: int, quiet: bool) -> None:
    from minidl_cli import seeds

    chosen = seeds.parse_seeds(seeds_text)

    def report(row: dict) -> None:
        if not quiet:
            click.echo(f"seed {row['seed']:>4}: test error {row['test_error']:.2%} "
                       f"({row['epochs']} epochs, {row['wall_s']:.1f} s, {row['status']})",
                       err=True)

    try:
        group, rows = seeds.run_seeds(config, chosen, jobs, report)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; finished seeds are in the group's summary.csv", err=True)
        sys.exit(130)
    _print_group_summary(rows)
    click.echo(group)
    if any(row["status"] != "completed" for row in rows):
        sys.exit(1)


def _print_group_summary(rows: list[dict]) -> None:
    from minidl_cli.seeds import statistics

    click.echo(f"{len(rows)} seeds        mean ± std            min       max")
    for key in ("train_error", "test_error", "test_loss"):
        st = statistics([row[key] for row in rows])
        percent = key.endswith("error")
        fmt = (lambda v: f"{v:.2%}") if percent else (lambda v: f"{v:.4f}")
        click.echo(f"{key:<12} {fmt(st['mean']):>8} ± {fmt(st['std']):<8} "
                   f"{fmt(st['min']):>9} {fmt(st['max']):>9}")


# --- evaluate, plot, gradcheck, list ---------------------------------------------------


@main.command()
@click.argument("run_dir", type=RUN_PATH)
@click.option("--checkpoint", default="last", show_default=True,
              help="last, best, an epoch number, or a checkpoint file.")
@click.option("--json", "as_json", is_flag=True, help="Print eval.json instead of a table.")
@handle_errors
def evaluate(run_dir: Path, checkpoint: str, as_json: bool) -> None:
    """Evaluate a run's checkpoint on its train and test sets; write eval.json.

    Given a seed group (from --seeds), evaluates every member and prints mean ± std.
    """
    from minidl_cli import seeds
    from minidl_cli.experiment import evaluate_run

    if seeds.is_group(run_dir):
        results = [evaluate_run(m, checkpoint) for m in seeds.open_group(run_dir)]
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        for member, r in zip(seeds.open_group(run_dir), results, strict=True):
            click.echo(f"{member.name}: epoch {r['epoch']}, train error "
                       f"{r['train']['error']:.2%}, test error {r['test']['error']:.2%}")
        _print_group_summary([{f"{s}_{k}": r[s][k] for s in ("train", "test")
                               for k in ("error", "loss")} for r in results])
        return
    result = evaluate_run(run_dir, checkpoint)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"checkpoint {result['checkpoint']} (epoch {result['epoch']})")
    click.echo(f"{'split':<6} {'loss':>10} {'accuracy':>9} {'error':>8}")
    for split in ("train", "test"):
        r = result[split]
        click.echo(f"{split:<6} {r['loss']:>10.6f} {r['accuracy']:>9.2%} {r['error']:>8.2%}")
    for split in ("train", "test"):
        click.echo(f"confusion matrix ({split}; rows: true class, columns: predicted)")
        for i, row in enumerate(result[split]["confusion"]):
            click.echo(f"  {i:>3}: " + " ".join(f"{n:>6}" for n in row))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=RUN_PATH)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where overlaid pictures go (several runs; default: current directory).")
@handle_errors
def plot(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """Redraw a run's pictures into its plots/; overlay several runs' curves into --out.

    Given a seed group, draws the mean curves with a ±1 std band into the group's plots/.
    """
    from minidl_cli import plots, seeds
    from minidl_cli.experiment import replot_run
    from minidl_cli.runs import Run

    if len(run_dirs) == 1 and seeds.is_group(run_dirs[0]):
        target = out or run_dirs[0] / "plots"
        target.mkdir(parents=True, exist_ok=True)
        for path in plots.plot_group(seeds.open_group(run_dirs[0]), target):
            click.echo(path)
        return
    if len(run_dirs) == 1 and out is None:
        for path in replot_run(run_dirs[0]):
            click.echo(path)
        return
    runs = [Run.open(d) for d in run_dirs]
    out = out or Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    for path in plots.overlay_runs([r.path for r in runs], out):
        click.echo(path)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=CONFIG_PATH)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@handle_errors
def gradcheck(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Check every module and the loss of CONFIG's model against torch autograd (float64)."""
    import torch

    from minidl_cli.config import load_config
    from minidl_cli.gradcheck import TOLERANCE, check_network
    from minidl_cli.train import Trainer

    _check_overrides(list(overrides))
    config = load_config(config_path, list(overrides))
    config["train"] = {**config["train"], "dtype": "float64", "device": "cpu"}
    trainer = Trainer(config)
    n = min(64, len(trainer.splits["train"].x))
    part = trainer.splits["train"]
    report = check_network(trainer.model, trainer.loss_fn, part.x[:n], part.targets[:n])
    click.echo(f"{'module':<28} {'max rel. error vs autograd':>27} {'vs central diff.':>17}")
    for r, numeric in report.rows:
        numeric_text = "-" if numeric is None else f"{numeric:.2e}"
        click.echo(f"{r.name:<28} {r.max_error:>27.2e} {numeric_text:>17}")
    if not report.passed():
        click.echo(f"gradcheck FAILED: some error exceeds {TOLERANCE:g} (autograd) "
                   "or 1e-5 (central differences)", err=True)
        sys.exit(1)
    click.echo(f"gradcheck passed: {len(report.rows)} checks within {TOLERANCE:g} "
               f"(torch {torch.__version__})")


@main.command(name="list")
@click.argument("kind", required=False,
                type=click.Choice(["layer", "loss", "optimizer", "scheduler", "dataset"]))
@handle_errors
def list_(kind: str | None) -> None:
    """Every registered component with its options, types and defaults."""
    from minidl_cli import registry

    for k in [kind] if kind else registry.KINDS:
        click.echo(f"{k}s:")
        for entry in registry.entries(k):
            aliases = f" (also: {', '.join(entry.aliases)})" if entry.aliases else ""
            click.echo(f"  {entry.name}{aliases} - {entry.summary}")
            for option in entry.options():
                click.echo(f"      {option.describe()}")
        click.echo()
