"""What every command shares: input types, and library errors turned into exit codes."""

from __future__ import annotations

import errno
import functools
import gc
import os
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from minidl_cli.runs import RUN_FILES, as_given, holder_name, run_holding

_gc_paused = False  # by pause_gc_for_imports, until imports_done


def pause_gc_for_imports() -> None:
    """Pause the cyclic garbage collector while a `minidl` process imports torch (and the
    rest of what its command needs); the command calls imports_done() after them.

    Importing torch leaves about 165,000 objects that live as long as the process, and the
    collector walks them again and again while they are being created: about 0.3 CPU s of
    `minidl train` on a busy 2-core machine, and each later full collection walks them
    again. Only the process entry point (cli.Command) calls this, never a library function
    or a CliRunner test.
    """
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def imports_done() -> None:
    """After a command's imports: move every object so far to the permanent generation
    (gc.freeze: never walked again) and collect as usual from here on. Does nothing unless
    pause_gc_for_imports paused the collector."""
    global _gc_paused
    if _gc_paused:
        gc.freeze()
        gc.enable()
        _gc_paused = False


class KindPath(click.Path):
    """A path that must be a run directory ("run"), a config file ("config"), an output
    folder ("folder") or an output file ("file"). The wrong kind is one 'error:' line that
    names the fix (exit 2), not click's usage block."""

    def __init__(self, kind: str):
        super().__init__(path_type=Path, file_okay=kind in ("config", "file"),
                         dir_okay=kind in ("run", "folder"))
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        path = Path(value)
        option = param.opts[0] if param is not None and param.opts[0].startswith("--") else None
        shown = f"{option} {path}" if option else str(path)
        if self.kind in ("run", "folder") and path.is_file():
            raise UserError(f"{shown}: is a file, not a "
                            f"{'folder' if self.kind == 'folder' else 'run directory'}; "
                            f"{_file_given_fix(path, self.kind, option)}")
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if self.kind == "folder" and blocking is not None:  # before the command's work
            raise UserError(f"{shown}: {blocking} is a file, so no folder can be made there; "
                            f"give a folder path, e.g. {option} plots/")
        if self.kind in ("config", "file") and path.is_dir():
            raise UserError(f"{shown}: is a directory, not a "
                            f"{'config' if self.kind == 'config' else 'results'} file; "
                            f"{_dir_given_fix(path, self.kind, ctx)}")
        return super().convert(value, param, ctx)


def _file_given_fix(path: Path, kind: str, option: str | None) -> str:
    if kind == "folder":
        return f"give a folder for the pictures (created if missing), e.g. {option} plots/"
    holder = run_holding(path.parent)
    if holder is not None:  # a checkpoint or config of a run: the run is what is asked for
        return (f"it lies in {holder_name(holder, path)}: give that folder instead"
                + (f", {option} {as_given(holder, path)}" if option else ""))
    if option == "--resume":
        return (f"to train from a config use minidl train {path}; --resume takes the run "
                "directory minidl train printed")
    if path.suffix in (".yaml", ".yml"):
        return f"train it first: minidl train {path}, then give the run directory it prints"
    return "give the run directory minidl train printed (runs/NAME-DATE)"


def _dir_given_fix(path: Path, kind: str, ctx: click.Context | None) -> str:
    if kind == "file":
        name = "eval.json" if ctx is not None and ctx.info_name == "evaluate" else "results.csv"
        return f"give a file name, e.g. --out {path / name}"
    if (path / "config.yaml").is_file():
        return f"give a YAML file, e.g. the run's own {path / 'config.yaml'}"
    return "give a YAML file"


CONFIG_PATH = KindPath("config")
RUN_PATH = KindPath("run")
OUT_FOLDER = KindPath("folder")
OUT_FILE = KindPath("file")


# The reader of an output stream went away: a closed pipe (`| head`), a closed terminal.
LOST_READER = (errno.EPIPE, errno.EIO, errno.ECONNRESET)
# The file system refused a write: full disk, quota, file-size limit, read-only, I/O error.
CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


# The file system or the permissions refuse any write: the user's to fix, not a full disk.
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _not_writable(filename: str | os.PathLike) -> Path:
    """The run directory holding `filename` (the nearest parent with a meta.json), else its
    parent directory."""
    parent = Path(filename).parent
    for folder in (parent, *parent.parents):
        if (folder / "meta.json").exists():
            return folder
    return parent


def echo(message: Any = "", err: bool = False, nl: bool = True) -> None:
    """click.echo that outlives its reader: when the pipe or terminal is gone (EPIPE, EIO)
    the stream is pointed at /dev/null and the command carries on (a run trains on)."""
    try:
        click.echo(message, err=err, nl=nl)
    except OSError as e:
        if e.errno not in LOST_READER:
            raise
        to_devnull(sys.stderr if err else sys.stdout)


def to_devnull(stream) -> None:
    """Point `stream`'s file descriptor at /dev/null: its pending and later writes vanish
    instead of failing (and Python's final flush does not fail either)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's buffer)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class UserError(click.ClickException):
    """Bad input: printed as 'error: ...' lines, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        for line in self.message.splitlines():
            echo(f"error: {line}", err=True)


class Failure(UserError):
    """Not the input's fault (a full disk, a failed run): 'error: ...' lines, exit code 1."""

    exit_code = 1


@contextmanager
def showing_run_warnings():
    """minidl's RunWarnings print as one 'warning: ...' line on stderr as they happen;
    other warnings show as Python shows them."""
    from minidl_cli.runs import RunWarning

    with warnings.catch_warnings():  # restores showwarning and the filters afterwards
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, RunWarning):
                echo(f"warning: {message}", err=True)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.simplefilter("always", RunWarning)
        warnings.showwarning = show
        yield


def handle_errors(command):
    """Turn the library's exceptions into exit codes and short messages (tracebacks: --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from minidl_cli.config import ConfigError
        from minidl_cli.runs import RunError, RunWriteError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            with showing_run_warnings():
                return command(*args, **kwargs)
        except UserError:
            raise
        except click.UsageError as e:  # our own checks of the options: one line each, as
            raise UserError(e.format_message()) from None  # every other bad input
        except (click.ClickException, BrokenPipeError):  # click quiets a closed pipe (| head)
            raise
        except RunWriteError as e:
            if debug:
                traceback.print_exc()
            raise Failure(str(e)) from None
        except (ConfigError, RunError, ValueError, FileNotFoundError, ImportError) as e:
            if debug:
                traceback.print_exc()
            raise UserError(str(e) or type(e).__name__) from None
        except OSError as e:
            if debug:
                traceback.print_exc()
            if e.errno in NOT_WRITABLE and e.filename:
                raise UserError(f"cannot write {e.filename}: {_not_writable(e.filename)} is "
                                "read-only (or not writable)") from None
            if e.errno in CANNOT_WRITE:
                raise Failure(f"cannot write {e.filename or 'a file'}: {e.strerror or e}; "
                              "free some space (or fix the file system) and try again") from None
            raise UserError(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own): 130
            if debug:
                traceback.print_exc()
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except Exception as e:  # a second signal no command caught (train.Interrupted)
            if not isinstance(e, getattr(sys.modules.get("minidl_cli.train"), "Interrupted",
                                         ())):
                raise
            click.echo(f"\ninterrupted by {e}", err=True)
            sys.exit(128 + e.signum)

    return wrapper


def refuse_out(out: Path | None, run_dir: Path, inputs: tuple[Path | None, ...] = ()) -> None:
    """UserError when --out would overwrite what the command reads or what a run keeps: one
    of `inputs` (the input file, --data, a --checkpoint file), a data file a run was trained
    on (its meta.json's data_files: this run's and those of the runs beside it), or anything
    inside a run directory, seed group or sweep (checkpoints, config.yaml, meta.json).
    Paths are compared resolved (symlinks, `..`). An ordinary file elsewhere is overwritten,
    as a results file the user named should be."""
    if out is None:
        return
    target = out.resolve()
    for given in inputs:
        if given is not None and str(given) != "-" and given.resolve() == target:
            raise UserError(f"--out {out} is the input {given}: writing there would destroy "
                            "it; write the results to another file")
    for run, recorded in _recorded_data(run_dir, target):
        if recorded == target:
            raise UserError(f"--out {out} is the data {run} was trained on (its meta.json "
                            "records it): writing there would destroy it; write the results "
                            "to another file")
    holder = run_holding(target.parent)
    if holder is not None:
        raise UserError(f"--out {out} is inside {holder_name(holder)}: writing there could "
                        "destroy a run's files (its checkpoints, config, data); write outside "
                        "every run directory")


def refuse_out_folder(out: Path | None, own: Path | None = None) -> None:
    """UserError when the pictures' folder --out is or lies in a run directory, seed group
    or sweep (drawing there could overwrite its pictures or files), unless it is `own`: the
    folder the command draws into without --out (a run's own plots/)."""
    if out is None:
        return
    holder = run_holding(out)
    if holder is not None and (own is None or out.resolve() != own.resolve()):
        raise UserError(f"--out {out} is inside {holder_name(holder)}: drawing there could "
                        "overwrite its files (its pictures, checkpoints); give a folder "
                        "outside every run directory")


def _recorded_data(run_dir: Path, target: Path | None = None) -> list[tuple[Path, Path]]:
    """(run, data file resolved) for each data file that `run_dir` and the runs beside it
    (in its runs directory, members of groups and sweeps included) were trained on; when
    the file `target` exists, also those of the runs in every runs folder (a folder holding
    a run, seed group or sweep) in or beside the current directory and target's folder, as
    runs_dir=runs2 keeps them."""
    import json

    run_dir = Path(run_dir)
    folders = {run_dir.parent}
    if target is not None and target.is_file():
        for near in {Path.cwd().resolve(), target.parent}:
            folders.update(_runs_folders(near))
    metas = {run_dir / "meta.json"}
    for folder in folders:
        for pattern in ("*/meta.json", "*/*/meta.json", "*/*/*/meta.json"):
            metas.update(folder.glob(pattern))
    found = []
    for meta in sorted(metas):
        try:
            files = json.loads(meta.read_text()).get("data_files") or {}
        except (OSError, ValueError, AttributeError):
            continue
        found += [(meta.parent, Path(name).resolve()) for name in files]
    return found


def _runs_folders(folder: Path) -> list[Path]:
    """`folder` and its subfolders that hold a run directory, seed group or sweep."""
    def holds_runs(path: Path) -> bool:
        try:
            return any(child.is_dir() and any((child / n).is_file() for n in RUN_FILES)
                       for child in path.iterdir())
        except OSError:
            return False

    try:
        subfolders = [d for d in folder.iterdir() if d.is_dir()]
    except OSError:
        return []
    return [d for d in (folder, *subfolders) if holds_runs(d)]


def check_overrides(overrides: list[str]) -> None:
    """UserError naming every override that is not KEY=VALUE."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError("\n".join(f"override {o!r}: expected KEY=VALUE, e.g. optimizer.lr=0.05"
                                  for o in bad))


def print_group_summary(rows: list[dict], task: str = "classification") -> None:
    """mean ± std, min and max of a seed group's final metrics (the task's), one line each,
    over the seeds that completed (rows without a status are evaluations: all count); then
    why each failed seed failed, on stderr."""
    from minidl_cli.seeds import statistics
    from minidl_cli.tasks import by_name, format_metric

    done = [row for row in rows if row.get("status", "completed") == "completed"]
    for row in rows:
        if row.get("reason"):
            echo(f"seed {row['seed']} failed: {row['reason']}", err=True)
    if not done:
        click.echo(f"no seed of {len(rows)} completed: no final metrics to summarise")
        return
    counted = f"{len(done)} seeds" if len(done) == len(rows) else f"{len(done)}/{len(rows)} seeds"
    click.echo(f"{counted:<14} mean ± std            min       max")
    for key in by_name(task).group_keys:
        st = statistics([row[key] for row in done])
        shown = {name: format_metric(key, value) for name, value in st.items()}
        click.echo(f"{key:<12} {shown['mean']:>8} ± {shown['std']:<8} "
                   f"{shown['min']:>9} {shown['max']:>9}")
