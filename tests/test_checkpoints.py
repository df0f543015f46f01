"""Checkpoints are plain data read with weights_only=True, written atomically; run directories
are created atomically and never reused."""

from __future__ import annotations

import builtins
import csv
import errno
import json
import os
import pickle
import shutil
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import pytest
import torch

from minidl_cli import runs
from minidl_cli.runs import Run, RunError, atomic_write, create_run_dir, load_checkpoint
from tests.helpers import invoke, meta, metrics, run_of, train_tiny, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("trained"), "train.epochs=2")


class Payload:
    """Unpickling it calls `function(*args)`: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def malicious_files(tmp_path: Path, pwned: Path) -> dict[str, Path]:
    """Checkpoints whose loading with weights_only=False would create `pwned`."""
    files = {}
    system = Payload(os.system, f"touch {pwned}")
    opener = Payload(builtins.open, str(pwned), "w")
    for name, payload in (("system", system), ("open", opener)):
        # inside a dict that otherwise looks like a minidl checkpoint, via torch.save (zip)
        path = tmp_path / f"torch-{name}.pt"
        torch.save({"format": "minidl-checkpoint", "version": 1, "epoch": 1, "model": payload},
                   path)
        files[f"torch-{name}"] = path
        # a bare pickle stream, as `pickle.dump` writes it
        path = tmp_path / f"pickle-{name}.pt"
        with open(path, "wb") as f:
            pickle.dump(payload, f)
        files[f"pickle-{name}"] = path
        # torch's legacy (non-zip) format
        path = tmp_path / f"legacy-{name}.pt"
        torch.save({"model": payload}, path, _use_new_zipfile_serialization=False)
        files[f"legacy-{name}"] = path
    return files


def test_malicious_checkpoints_never_run_code(trained, tmp_path):
    pwned = tmp_path / "pwned"
    for name, path in malicious_files(tmp_path, pwned).items():
        with pytest.raises(RunError, match="refusing to load") as error:
            load_checkpoint(path)
        assert str(path) in str(error.value), name

        result = invoke("evaluate", trained, "--checkpoint", path)
        assert result.exit_code == 2, (name, result.output)
        assert str(path) in result.stderr and "refusing to load" in result.stderr
        assert "Traceback" not in result.output and "Warning" not in result.stderr
        assert not pwned.exists(), name
    assert not (trained / "eval.json").exists()


def test_a_malicious_last_pt_stops_resume_evaluate_and_plot(trained, tmp_path):
    pwned = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "meta.json", "metrics.csv"):
        (run / name).write_bytes((trained / name).read_bytes())
    (run / "checkpoints").mkdir()
    evil = malicious_files(tmp_path, pwned)["torch-system"]
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    for args in (["train", "--resume", run, "train.epochs=5"], ["evaluate", run], ["plot", run]):
        result = invoke(*args)
        assert result.exit_code == 2 and "last.pt" in result.stderr, result.output
    assert not pwned.exists()
    assert not (run / "plots").exists() and not (run / "eval.json").exists()


def test_minidl_loads_only_with_weights_only(trained, tmp_path, monkeypatch):
    run = shutil.copytree(trained, tmp_path / "run")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert invoke("evaluate", run).exit_code == 0
    assert invoke("plot", run).exit_code == 0
    assert invoke("train", "--resume", run, "train.epochs=3", "-q").exit_code == 0
    assert len(calls) >= 3 and all(flag is True for flag in calls)


def test_checkpoint_is_plain_data(trained):
    state = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert state["format"] == "minidl-checkpoint" and state["version"] == 1
    assert state["epoch"] == len(state["history"])
    for key in ("model", "optimizer", "rng", "history", "config"):
        assert key in state

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))

    assert plain(state)


@pytest.mark.parametrize("keep", [0, 1, 64, 1000, -1])
def test_truncated_checkpoints_are_refused_naming_the_file(trained, tmp_path, keep):
    data = (trained / "checkpoints" / "last.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(RunError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    for i, obj in enumerate([{"weight": torch.ones(2)}, [torch.ones(1)], torch.zeros(3), 7,
                             {"format": "minidl-checkpoint", "version": 99, "model": {}}]):
        path = tmp_path / f"foreign{i}.pt"
        torch.save(obj, path)
        with pytest.raises(RunError, match="minidl checkpoint") as error:
            load_checkpoint(path)
        assert str(path) in str(error.value)


# --- atomic writes ----------------------------------------------------------------------


def test_atomic_write_fsyncs_then_renames(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    target = tmp_path / "file.bin"
    atomic_write(target, b"new")
    assert events == ["fsync", "replace"] and target.read_bytes() == b"new"


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old and good")

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write(target, b"new and half written")
    assert target.read_bytes() == b"old and good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_failed_checkpoint_save_keeps_the_previous_one(trained, tmp_path, monkeypatch):
    run = Run(tmp_path)
    run.checkpoints.mkdir()
    good = (trained / "checkpoints" / "last.pt").read_bytes()
    (run.checkpoints / "last.pt").write_bytes(good)
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint({"epoch": 9, "model": {}}, "last")
    assert (run.checkpoints / "last.pt").read_bytes() == good
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == 2
    assert [p.name for p in run.checkpoints.iterdir()] == ["last.pt"]


# --- run directories --------------------------------------------------------------------


class FrozenClock(datetime):
    """Every run starts in the same second."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 1, 12, 0, 0, tzinfo=tz)


def _create_many(runs_dir: str, count: int) -> list[str]:
    runs.datetime = FrozenClock  # a forked worker: patch its own copy of the module
    return [create_run_dir(Path(runs_dir), "same").name for _ in range(count)]


def test_run_dirs_are_never_reused_across_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "datetime", FrozenClock)
    names: list[str] = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(5):
            names.append(create_run_dir(tmp_path, "same").name)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 40 == len(set(names))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert "same-20260101-120000" in names and "same-20260101-120000-40" in names


def test_run_dirs_are_never_reused_across_processes(tmp_path):
    with ProcessPoolExecutor(4, mp_context=get_context("fork")) as pool:
        batches = list(pool.map(_create_many, [str(tmp_path)] * 4, [6] * 4))
    names = [name for batch in batches for name in batch]
    assert len(names) == 24 == len(set(names))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_an_existing_directory_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "datetime", FrozenClock)
    taken = tmp_path / "same-20260101-120000"
    taken.mkdir()
    (taken / "precious.txt").write_text("keep")
    assert create_run_dir(tmp_path, "same").name == "same-20260101-120000-2"
    assert (taken / "precious.txt").read_text() == "keep" and len(list(taken.iterdir())) == 1


def test_two_cli_runs_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "datetime", FrozenClock)
    config = write_config(tmp_path)
    paths = []
    for _ in range(2):
        result = invoke("train", config, "-q", "train.epochs=1")
        assert result.exit_code == 0, result.output
        paths.append(Path(result.stdout.strip().splitlines()[-1]))
    assert [p.name for p in paths] == ["tiny-20260101-120000", "tiny-20260101-120000-2"]
    for path in paths:
        assert load_checkpoint(path / "checkpoints" / "last.pt")["epoch"] == 1
        assert len((path / "metrics.csv").read_text().splitlines()) == 2


# --- files follow the umask, as open() would make them --------------------------------------


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_atomic_writes_get_the_permissions_open_gives(tmp_path, umask, mask):
    umask(mask)
    atomic_write(tmp_path / "atomic.json", b"{}")
    with open(tmp_path / "plain.json", "wb") as f:
        f.write(b"{}")
    mode = (tmp_path / "atomic.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp_path / "atomic.json").chmod(0o640)  # an existing file keeps its mode, as with open()
    atomic_write(tmp_path / "atomic.json", b"[]")
    assert (tmp_path / "atomic.json").stat().st_mode & 0o777 == 0o640


def test_every_file_of_a_run_follows_the_umask(tmp_path, umask):
    umask(0o002)
    run = train_tiny(tmp_path, "train.epochs=1")
    assert invoke("evaluate", run).exit_code == 0
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"config.yaml", "meta.json", "metrics.csv", "eval.json", "last.pt"} <= {
        p.name for p in files}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: oct(0o664) for p in files}


# --- a full disk: the file, the run and how to resume; no half-made run --------------------


def full_disk_after(monkeypatch, writes: int, code: int = errno.ENOSPC) -> None:
    """atomic_write fails with `code` from its (writes + 1)-th call on."""
    real, calls = runs.atomic_write, []

    def atomic_write(path, data):
        calls.append(path)
        if len(calls) > writes:
            raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(runs, "atomic_write", atomic_write)


def test_a_full_disk_while_training_names_the_file_and_how_to_resume(tmp_path, monkeypatch):
    full_disk_after(monkeypatch, 4)  # config, meta, metrics, epoch-0 last.pt; then full
    result = invoke("train", write_config(tmp_path), "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cannot write {run / 'checkpoints' / 'last.pt'} "
                           "(No space left on device)")
    assert line.endswith(f"resume with: minidl train --resume {run}")
    assert meta(run)["status"] == "running"  # meta.json could not be written either
    monkeypatch.undo()  # space freed
    assert run_of(invoke("train", "--resume", run, "-q")) == run
    assert meta(run)["status"] == "completed" and len(metrics(run)) == 3


@pytest.mark.parametrize("writes", [0, 2, 3])  # config.yaml, metrics.csv, last.pt
def test_a_full_disk_while_creating_the_run_leaves_nothing(tmp_path, monkeypatch, writes):
    full_disk_after(monkeypatch, writes, errno.EDQUOT)
    result = invoke("train", write_config(tmp_path), "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot write ") and "Disk quota exceeded" in line
    assert list((tmp_path / "runs").iterdir()) == []


# --- a read-only run still evaluates -------------------------------------------------------


def test_evaluate_on_a_read_only_run_prints_its_results(trained, tmp_path, monkeypatch):
    full_disk_after(monkeypatch, 0, errno.EROFS)
    result = invoke("evaluate", trained)
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout and "accuracy" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: could not write {trained / 'eval.json'} "
                           "(Read-only file system)")
    assert "--json" in line and "--out" in line
    as_json = invoke("evaluate", trained, "--json")
    (line,) = as_json.stderr.splitlines()  # printed as JSON already: not told to do that
    assert "--out FILE" in line and "--json" not in line, line
    with open(trained / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["test"]["accuracy"] == pytest.approx(
        float(last["test_accuracy"]))
    monkeypatch.undo()
    out = tmp_path / "elsewhere.json"
    assert invoke("evaluate", trained, "--out", out).exit_code == 0
    assert json.loads(out.read_text())["epoch"] == meta(trained)["epochs_completed"]



def test_plot_and_resume_of_a_read_only_run_are_refused_up_front(trained, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (
        mode == os.W_OK and str(path).startswith(str(trained))) and real(path, mode, **kw))
    before = (trained / "metrics.csv").read_text()
    for args, doing in ((["plot", trained], "redraw its pictures"),
                        (["train", "--resume", trained, "train.epochs=4"], "resume it")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        instead = (f", or draw its curves elsewhere: minidl plot {trained} --out DIR"
                   if args[0] == "plot" else "")
        assert line == (f"error: {trained} is read-only (or not writable): cannot {doing}; "
                        f"copy it somewhere writable (cp -r {trained} COPY) and use the copy"
                        + instead)
    assert (trained / "metrics.csv").read_text() == before


def test_a_picture_that_cannot_be_written_names_it_and_the_read_only_run(trained, monkeypatch):
    from matplotlib.figure import Figure

    from minidl_cli import plots
    from minidl_cli.plots import canvas

    picture = trained / "plots" / "data.png"
    with pytest.raises(OSError) as e:  # named: the picture, not its hidden temporary file
        canvas.save(Figure(), trained / "missing" / "data.png")
    assert e.value.filename == str(trained / "missing" / "data.png")
    monkeypatch.setattr(plots, "draw_run_plots", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system", str(picture))))
    result = invoke("plot", trained)
    assert result.exit_code == 2
    assert result.stderr == (f"error: cannot write {picture}: {trained} is read-only (or not "
                             "writable)\n")
