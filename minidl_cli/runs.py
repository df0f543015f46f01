"""Run directories: creation, meta.json, metrics.csv and checkpoints, all written atomically.

Layout: config.yaml, meta.json, metrics.csv, checkpoints/last.pt,
checkpoints/epoch_NNNN.pt, checkpoints/best.pt, plots/*.png, eval.json.
Every file is written to a temporary sibling, flushed, fsynced and renamed over the
target, so a `kill -9` at any moment leaves either the old or the new version. During
training metrics.csv grows by one appended line per epoch instead (a reader drops a cut-off
last line, and resuming rewrites the file from the checkpoint's history).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from minidl_cli import __version__

CHECKPOINT_FORMAT = "minidl-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("epoch", "model", "optimizer", "rng", "history")  # what resuming needs
# classification's header; each task names its own (tasks.Task.columns)
METRICS_COLUMNS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                   "lr", "elapsed_s"]
VAL_COLUMNS = ["val_loss", "val_accuracy"]


class RunError(ValueError):
    """A run directory or checkpoint that cannot be used; the message says why and what to do."""


class RunWriteError(RuntimeError):
    """A run's files could not be written (disk full, quota, read-only file system); not the
    input's fault. The message names the file and says what was kept."""


class RunWarning(UserWarning):
    """Something a user should know about a run that does not make it fail (pictures that
    could not be drawn, a loss that never improved, eval.json that could not be saved)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one.

    The file gets the permissions `open(path, "wb")` would give it: an existing file's, or
    0666 less the umask (mkstemp's own 0600 would hide a run from the user's group).
    Raises OSError naming `path` (not the temporary file) when it cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _mode_for(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON (and a final newline) to `path` with atomic_write."""
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def _mode_for(path: Path) -> int:
    """The permission bits open() would give `path`: its own if it exists, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """A new, empty `<runs_dir>/<name>-<YYYYMMDD-HHMMSS>[-N]`; never an existing one.

    `mkdir` without exist_ok is atomic: of several processes racing for one name, exactly
    one wins and the others move on to the next suffix.
    """
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"runs_dir: cannot create the folder {runs_dir} ({e.strerror}); choose "
                       "another with runs_dir=DIR") from None
    stem = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        path = runs_dir / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"could not create a run directory under {runs_dir}")


GROUP_FILE = "group.json"  # a seed group's record (seeds.py)
SWEEP_FILE = "sweep.json"  # a sweep's record (sweeps.py)
RUN_FILES = ("meta.json", GROUP_FILE, SWEEP_FILE)  # a run, a seed group, a sweep


def _flock(path: Path) -> int | None:
    """An open descriptor of the directory `path` holding its exclusive flock; None where
    the system or file system has no flock. RunError when another process holds it."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunError(f"{path} is being trained by another minidl process; wait for it to "
                       "finish (or stop it with Ctrl-C), then resume") from None
    except OSError:  # a file system without locks (some network mounts): train unlocked
        os.close(fd)
        return None
    return fd


def collection_of(path: Path) -> Path | None:
    """The sweep or seed group a run directory belongs to (the sweep, for a member of one
    of its points' groups), or None; the directory a sweep's or group's resume locks."""
    path = Path(path)
    for outer in (path.parent.parent, path.parent):
        if (outer / SWEEP_FILE).is_file():
            return outer
    return path.parent if (path.parent / GROUP_FILE).is_file() else None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the directory `path` (a sweep, a seed group) for this process while the block
    runs, with the lock a run's own trainer takes (Run.lock): another minidl process that
    would train it too gets a RunError naming `path`, before it changes anything."""
    holder = Run(path)
    holder.lock()
    try:
        yield
    finally:
        holder.unlock()


class Run:
    """One run directory: typed access to its files."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.plots = self.path / "plots"
        self._metrics_written: tuple[int, list[str]] | None = None  # (rows, columns) we wrote
        self._metrics_file: io.TextIOBase | None = None  # kept open for appending
        self._lock_fd: int | None = None  # the directory, flock-ed while this process trains
        self._collection_fd: int | None = None  # its sweep or seed group's, when asked

    @classmethod
    def create(cls, runs_dir: Path, name: str) -> Run:
        """A new run directory, locked for this process (see `lock`)."""
        return cls.adopt(create_run_dir(Path(runs_dir), name))

    @classmethod
    def adopt(cls, path: Path) -> Run:
        """A run in `path`, a new empty directory made for it (a seed group's member),
        locked for this process."""
        run = cls(path)
        run.lock()
        run.checkpoints.mkdir()
        return run

    # --- one trainer at a time ---

    def check_writable(self, doing: str, instead: str | None = None) -> None:
        """RunError when the run directory cannot be written (a read-only mount, another
        user's run), before anything is done: `doing` says what needed it ("resume it"),
        `instead` what else would do without writing there."""
        targets = [self.path, self.config_path] + ([self.plots] if self.plots.exists() else [])
        if not all(os.access(p, os.W_OK) for p in targets if p.exists()):
            raise RunError(f"{self.path} is read-only (or not writable): cannot {doing}; copy "
                           f"it somewhere writable (cp -r {self.path} COPY) and use the copy"
                           + (f", or {instead}" if instead else ""))

    def lock(self, collection: bool = False) -> None:
        """Hold the run directory for this process until `unlock()` or the process ends.

        Another minidl process that would train the same run (a second `--resume`) gets a
        RunError instead of interleaving its writes with ours. The lock is flock(2) on the
        directory itself: no file to clean up, and the kernel drops it when the process
        dies, kill -9 included. Without flock (not POSIX, or a file system that refuses it)
        there is no lock. With `collection` (a member of a sweep or seed group resumed on
        its own), the collection holding it (collection_of) is held too, first: the member
        is not taken from under that collection's own resume, nor the other way round.
        """
        if self._lock_fd is not None:
            return
        outer = collection_of(self.path) if collection else None
        self._collection_fd = _flock(outer) if outer is not None else None
        try:
            self._lock_fd = _flock(self.path)
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        for name in ("_lock_fd", "_collection_fd"):
            fd = getattr(self, name, None)
            setattr(self, name, None)
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock

    __del__ = unlock  # a Run dropped on an error path does not keep its directory locked

    @classmethod
    def open(cls, path: Path) -> Run:
        """An existing run directory; RunError if it is missing or not a minidl run."""
        path = Path(path)
        if not path.exists():
            raise RunError(f"run directory not found: {path} (pass a directory that "
                           "`minidl train` created, e.g. runs/disk-20260101-120000)")
        if (path / GROUP_FILE).is_file():  # one level above its runs
            names = json.loads((path / GROUP_FILE).read_text()).get("members") or []
            member = path / names[0] if names else path / "seed-0000"
            raise RunError(f"{path} is a seed group (from --seeds), not a run; give one of its "
                           f"member runs, e.g. {member} (evaluate and plot also take the "
                           "whole group)")
        if (path / SWEEP_FILE).is_file():
            points = json.loads((path / SWEEP_FILE).read_text()).get("points") or []
            point = path / points[0]["name"] if points else path
            raise RunError(f"{path} is a sweep (from --sweep), not a run; give one of its "
                           f"points, e.g. {point} (plot, compare and train --resume also "
                           "take the whole sweep)")
        if not path.is_dir() or not (path / "config.yaml").is_file():
            holder = run_holding(path.parent)
            fix = (f"it lies in {holder_name(holder, path)}: give that folder instead"
                   if holder is not None else "pass a directory that `minidl train` created")
            raise RunError(f"{path} is not a minidl run directory (it has no config.yaml); "
                           f"{fix}")
        return cls(path)

    # --- config.yaml, meta.json, eval.json ---

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def write_config(self, text: str) -> None:
        atomic_write(self.config_path, text.encode())

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_meta(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into meta.json (created with versions and argv the first time)."""
        meta = self.read_meta() or initial_meta()
        meta.update(fields)
        self.write_json("meta.json", meta)
        return meta

    def write_json(self, filename: str, obj: Any) -> None:
        write_json_atomic(self.path / filename, obj)

    # --- metrics.csv ---

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    def write_metrics(self, rows: list[dict[str, float]],
                      columns: list[str] | None = None) -> None:
        """Rewrite metrics.csv from the rows (the checkpoint holds them too, so they agree).

        `columns`: the header (the task's); default classification's.
        """
        if columns is None:
            columns = METRICS_COLUMNS + (VAL_COLUMNS if rows and "val_loss" in rows[0] else [])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        self.close()
        atomic_write(self.metrics_path, buffer.getvalue().encode())
        self._metrics_written = (len(rows), columns)

    def append_metrics(self, rows: list[dict[str, float]],
                       columns: list[str] | None = None) -> None:
        """Append rows[-1] to metrics.csv when this Run wrote it with rows[:-1], else rewrite it.

        One line per epoch instead of the whole file: the cost stays flat as a run grows.
        """
        if columns is None:
            columns = METRICS_COLUMNS + (VAL_COLUMNS if "val_loss" in rows[0] else [])
        if self._metrics_written != (len(rows) - 1, columns):
            return self.write_metrics(rows, columns)
        try:
            if self._metrics_file is None:
                self._metrics_file = self.metrics_path.open("a", newline="")
            csv.DictWriter(self._metrics_file, columns, lineterminator="\n",
                           extrasaction="ignore").writerow(rows[-1])
            self._metrics_file.flush()
        except OSError as e:  # a full disk: name the file (a bare write error does not)
            self._metrics_written = None  # the next write rewrites the whole file
            raise OSError(e.errno, e.strerror, str(self.metrics_path)) from None
        self._metrics_written = (len(rows), columns)

    def close(self) -> None:
        """Close metrics.csv if append_metrics holds it open."""
        file, self._metrics_file = self._metrics_file, None
        if file is not None:
            try:
                file.close()
            except OSError:  # a line that could not be flushed: the next write rewrites the file
                self._metrics_written = None

    # --- checkpoints ---

    def checkpoint_path(self, which: str) -> Path:
        """'last', 'best', an epoch number, or a path."""
        if which in ("last", "best"):
            return self.checkpoints / f"{which}.pt"
        if str(which).isdigit():
            return self.checkpoints / f"epoch_{int(which):04d}.pt"
        return Path(which)

    def save_checkpoint(self, state: dict[str, Any], which: str = "last") -> Path:
        import torch

        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, buffer)
        path = self.checkpoint_path(which)
        atomic_write(path, buffer.getvalue())
        return path


def default_checkpoint(run_dir: Path) -> str:
    """The checkpoint evaluate, predict, sample and load() use when none is named: best.pt
    for a run trained with train.early_stopping (the epoch it kept), last.pt otherwise."""
    stopping = _train_options(run_dir).get("early_stopping")
    return "best" if stopping and (Path(run_dir) / "checkpoints" / "best.pt").exists() else "last"


def kept_metrics(run_dir: Path) -> dict[str, float] | None:
    """The metrics.csv row of the model the run keeps (early_stopping.kept_row): the best
    epoch's for a run trained with train.early_stopping, else the last; None before its
    first epoch. Empty cells are left out; the others are floats."""
    from minidl_cli.early_stopping import kept_row

    try:
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            rows = [{k: float(v) for k, v in row.items() if v not in (None, "")}
                    for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return None
    return kept_row(rows, _train_options(run_dir))


def _train_options(run_dir: Path) -> dict[str, Any]:
    """The train: section of the run's config.yaml ({} when it cannot be read)."""
    from minidl_cli.config import ConfigError, load_yaml

    try:
        train = load_yaml(Path(run_dir) / "config.yaml").get("train")
    except (OSError, ConfigError, AttributeError):
        return {}
    return train if isinstance(train, dict) else {}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a minidl checkpoint with weights_only=True; RunError naming the file otherwise."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path} is a directory, not a checkpoint file (pass last, best, an "
                       "epoch number or a .pt file)")
    if not path.is_file() and re.fullmatch(r"epoch_\d{4,}\.pt", path.name):
        kept = sorted(int(p.stem[6:]) for p in path.parent.glob("epoch_*.pt")
                      if p.stem[6:].isdigit())
        raise RunError(f"checkpoint not found: {path}: a run keeps an epoch's checkpoint only "
                       "every train.checkpoint_every epochs (0, the default: none), and this "
                       f"one keeps {'epochs ' + ', '.join(map(str, kept)) if kept else 'none'}; "
                       "pass one of them, last or best")
    if not path.is_file():
        raise RunError(f"checkpoint not found: {path} (pass last, best, an epoch number or a "
                       "checkpoint file; a run keeps them in its checkpoints/ folder)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says more
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunError(f"refusing to load {path}: it is not made of tensors and plain data "
                       f"only ({_unpickling_reason(e)}); it holds Python objects or is corrupt, "
                       "and minidl never runs code from a checkpoint: use one that minidl "
                       "wrote") from None
    except Exception as e:  # truncated zip, garbage bytes, wrong magic number, ...
        raise RunError(f"cannot read checkpoint {path}: the file is truncated or corrupt "
                       f"({type(e).__name__}); use another checkpoint, e.g. "
                       "--checkpoint best or an epoch_NNNN.pt") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a minidl checkpoint (no 'format: {CHECKPOINT_FORMAT}')")
    if state.get("version") != CHECKPOINT_VERSION:
        raise RunError(f"{path} is a minidl checkpoint of version {state.get('version')!r}; "
                       f"this minidl reads version {CHECKPOINT_VERSION}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise RunError(f"{path} is an incomplete minidl checkpoint (missing "
                       f"{', '.join(missing)}); use another checkpoint of the run")
    return state


def _unpickling_reason(error: Exception) -> str:
    """The informative line of torch's weights_only refusal (it wraps it in advice)."""
    noise = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return (lines[0] if lines else "unsupported content")[:160]


def initial_meta() -> dict[str, Any]:
    import torch

    return {
        "status": "running",
        "seed": None,
        "started_at": now_iso(),
        "finished_at": None,
        "epochs_completed": 0,
        "minidl_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": None,
        "argv": sys.argv,
    }


def run_holding(path: Path) -> Path | None:
    """The run directory, seed group or sweep that `path` is or lies in (the nearest of it
    and its parents holding a meta.json, group.json or sweep.json), else None."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if any((folder / name).is_file() for name in RUN_FILES):
            return folder
    return None


def holder_name(folder: Path, given: Path | None = None) -> str:
    """'the sweep X', 'the seed group X' or 'the run X': what run_holding found, named as
    in the path the user gave when it lies in it (as_given)."""
    shown = as_given(folder, given) if given is not None else folder
    for name, kind in ((SWEEP_FILE, "sweep"), (GROUP_FILE, "seed group")):
        if (folder / name).is_file():
            return f"the {kind} {shown}"
    return f"the run {shown}"


def as_given(folder: Path, given: Path) -> Path:
    """`folder` (resolved) as the user's path `given` spells it: the ancestor of `given`
    that is `folder` (runs/x rather than /home/.../runs/x), else `folder` itself."""
    for candidate in (Path(given), *Path(given).parents):
        if candidate.resolve() == folder:
            return candidate
    return folder
