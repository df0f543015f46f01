"""Nothing surprising: what real use found (the cases of the bug report "Nothing surprising:
what real use found, fixed by kind"), each kind as a test. Files follow the umask; a run
survives losing its reader; an extended run moves its schedule's end; plugins are found from
any directory; no option is dropped silently; nothing after training fails a completed run;
a full disk names the file and how to resume; a read-only run still evaluates."""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minidl_cli import registry, runs
from minidl_cli.runs import atomic_write
from tests.helpers import TINY, invoke, train_tiny, write_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_of(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 3-epoch run the tests below read, never change."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


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


# --- a run survives losing its reader ------------------------------------------------------


def test_a_closed_pipe_does_not_stop_or_fail_the_run(tmp_path):
    """`minidl train ... 2>&1 | head -1`: the reader is gone before the first progress line;
    training goes on quietly, the run completes with its pictures, exit 0."""
    config = write_config(tmp_path, TINY)
    process = subprocess.Popen([sys.executable, "-m", "minidl_cli", "train", str(config)],
                               cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    process.stdout.close()  # the reader goes away (as head does after one line)
    assert process.wait(timeout=120) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert meta(run)["status"] == "completed" and len(rows(run)) == 3
    assert (run / "plots" / "loss.png").is_file()


@pytest.mark.parametrize("code", [errno.EPIPE, errno.EIO])
def test_progress_outlives_its_reader(monkeypatch, code):
    """EPIPE (a closed pipe) and EIO (a closed terminal) on a progress line: no exception;
    stderr is pointed at /dev/null (not here: it would blind pytest) and training goes on."""
    import click

    from minidl_cli.cli import common
    from minidl_cli.cli.train import Progress

    def gone(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    silenced = []
    monkeypatch.setattr(click, "echo", gone)
    monkeypatch.setattr(common, "_to_devnull", silenced.append)
    progress = Progress(2, 0, enabled=True)
    progress({"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.5, "test_accuracy": 0.5})
    assert silenced == [sys.stderr]


# --- extending a run moves the end of its schedule -----------------------------------------

COSINE = {**TINY, "optimizer": {"type": "sgd", "lr": 0.1}, "scheduler": "cosine",
          "train": {"epochs": 4, "batch_size": 50}}


def cosine_lr(epoch: int, t_max: int, base: float = 0.1) -> float:
    """The lr epoch `epoch` (from 1) trains with: torch's closed form at epoch - 1."""
    return base * (1 + math.cos(math.pi * (epoch - 1) / t_max)) / 2


def test_extending_a_cosine_run_moves_its_end(tmp_path):
    run = train_tiny(tmp_path, config=COSINE)
    extended = invoke("train", "--resume", run, "train.epochs=10", "-q")
    assert run_of(extended) == run and extended.stderr == ""  # T_max followed: no warning
    lrs = [float(row["lr"]) for row in rows(run)]
    expected = [cosine_lr(e, 4) for e in range(1, 5)] + [cosine_lr(e, 10) for e in range(5, 11)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert all(a > b > 0 for a, b in zip(lrs[4:], lrs[5:], strict=False))  # no 0, no restart
    assert yaml.safe_load((run / "config.yaml").read_text())["scheduler"]["T_max"] is None
    # the length may be set on resume too; a T_max the user set stays
    assert run_of(invoke("train", "--resume", run, "train.epochs=12", "scheduler.T_max=12",
                         "-q")) == run
    assert float(rows(run)[-1]["lr"]) == pytest.approx(cosine_lr(12, 12))
    printed = invoke("train", "--resume", run, "train.epochs=14", "--print-config").stdout
    assert yaml.safe_load(printed)["scheduler"]["T_max"] == 12



def test_extending_past_a_t_max_the_user_set_is_a_warning(tmp_path):
    """T_max: 1 then train.epochs=2: epoch 2 would restart the schedule without a word."""
    run = train_tiny(tmp_path, "train.epochs=1", "scheduler={type: cosine, T_max: 1}",
                     config=COSINE)
    result = invoke("train", "--resume", run, "train.epochs=2", "-q")
    assert run_of(result) == run
    assert result.stderr == ("warning: scheduler.T_max is 1 but the run now trains 2 epochs: "
                             "its schedule ends at epoch 1 and restarts after it; pass "
                             "scheduler.T_max=2 to stretch it over the whole run\n")


# --- plugins are found from any working directory ------------------------------------------

SWISH = """
import torch
from minidl_cli.nn import Module
from minidl_cli.registry import register

@register("layer", "test_surprise_swish")
class Swish(Module):
    '''y = x · sigmoid(x).'''
    def forward(self, x):
        self._x, self._s = x, torch.sigmoid(x)
        return x * self._s
    def backward(self, g):
        return g * (self._s + self._x * self._s * (1 - self._s))  # d/dx x·σ(x) = σ + xσ(1 − σ)
"""


def forget_plugin(module: str) -> None:
    """As a new process would be: the module not imported, its layer not registered."""
    sys.modules.pop(module, None)
    registry._entries["layer"].pop("test_surprise_swish", None)
    for key in [k for k, v in registry._lookup["layer"].items() if v == "test_surprise_swish"]:
        del registry._lookup["layer"][key]


def test_a_run_with_a_plugin_works_from_any_directory(tmp_path, monkeypatch):
    exp, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    exp.mkdir()
    elsewhere.mkdir()
    (exp / "minidl_test_surprise_swish.py").write_text(SWISH)
    model = [TINY["model"][0], "test_surprise_swish", *TINY["model"][2:]]
    config = write_config(exp, {**TINY, "model": model,
                                "plugins": ["minidl_test_surprise_swish"]})
    monkeypatch.chdir(tmp_path)
    run = run_of(invoke("train", config, "-q"))
    recorded = yaml.safe_load((run / "config.yaml").read_text())["plugins"]
    assert recorded == [str(exp / "minidl_test_surprise_swish.py")]

    monkeypatch.chdir(elsewhere)
    forget_plugin("minidl_test_surprise_swish")
    assert invoke("evaluate", run).exit_code == 0
    forget_plugin("minidl_test_surprise_swish")
    assert run_of(invoke("train", "--resume", run, "train.epochs=4", "-q")) == run
    forget_plugin("minidl_test_surprise_swish")
    assert run_of(invoke("train", run / "config.yaml", "train.epochs=1", "-q")).is_dir()
    # a plugin given as a file path, relative to the config
    forget_plugin("minidl_test_surprise_swish")
    config = write_config(exp, {**TINY, "model": model,
                                "plugins": ["./minidl_test_surprise_swish.py"]}, "by_path.yaml")
    result = invoke("train", config, "--print-config")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["plugins"] == recorded


# --- no option is dropped silently ---------------------------------------------------------


@pytest.mark.parametrize("args, names", [
    (["--resume", "{run}", "--seeds", "0-1"], ["--resume", "--seeds"]),
    (["--resume", "{run}", "--jobs", "2"], ["--jobs", "--seeds"]),
    (["{config}", "--jobs", "2"], ["--jobs", "--seeds"]),
    (["{config}", "--seeds", "0-1", "--print-config"], ["--print-config", "--seeds"]),
    (["{config}", "--nproc", "2", "--print-config"], ["--print-config", "--nproc"]),
    (["--resume", "{run}", "{config}"], ["--resume", "CONFIG"]),
    (["{config}", "--seeds", "0-1", "seed=3"], ["--seeds", "seed="]),
], ids=["resume-seeds", "resume-jobs", "jobs-alone", "print-config-seeds",
        "print-config-nproc", "resume-config", "seeds-seed"])
def test_options_that_would_be_dropped_are_usage_errors(trained, tmp_path, args, names):
    before = (trained / "meta.json").read_text(), (trained / "metrics.csv").read_text()
    config = write_config(tmp_path)
    result = invoke("train", *[a.format(run=trained, config=config) for a in args])
    assert result.exit_code == 2, result.output
    assert all(name in result.stderr for name in names), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    assert ((trained / "meta.json").read_text(), (trained / "metrics.csv").read_text()) == before


def test_resume_with_print_config_prints_and_trains_nothing(trained):
    before = (trained / "meta.json").read_text(), (trained / "metrics.csv").read_text()
    result = invoke("train", "--resume", trained, "train.epochs=12", "--print-config")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["epochs"] == 12 and printed["seed"] == TINY["seed"]
    assert ((trained / "meta.json").read_text(), (trained / "metrics.csv").read_text()) == before
    refused = invoke("train", "--resume", trained, "optimizer.lr=1", "--print-config")
    assert refused.exit_code == 2 and "cannot change optimizer.lr" in refused.stderr


# --- nothing after training fails a completed run ------------------------------------------


def test_a_picture_that_cannot_be_drawn_is_a_warning(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("Key backend: 'module://matplotlib_inline.backend_inline' is not a "
                         "valid value for backend")

    from minidl_cli import plots

    monkeypatch.setattr(plots, "draw_run_plots", broken)
    result = invoke("train", write_config(tmp_path), "-q")
    run = run_of(result)
    assert meta(run)["status"] == "completed"
    (line,) = result.stderr.splitlines()
    assert line.startswith("warning: the pictures could not be drawn (ValueError: Key backend")
    assert f"minidl plot {run}" in line


def test_a_loss_that_never_improves_is_a_warning(tmp_path):
    result = invoke("train", write_config(tmp_path), "-q", "optimizer.lr=50",
                    "optimizer.momentum=0", "train.epochs=10")
    run = run_of(result)
    assert meta(run)["status"] == "completed"
    (line,) = result.stderr.splitlines()
    assert line.startswith("warning: the training loss never fell below its first epoch's")
    assert "optimizer.lr=5" in line
    healthy = invoke("train", write_config(tmp_path), "-q", "train.epochs=10")
    assert healthy.exit_code == 0 and healthy.stderr == ""



@pytest.mark.parametrize("last, says", [
    ({"train_loss": 0.6, "train_accuracy": 0.705}, "no better than always predicting the most"),
    ({"train_loss": 0.6, "train_accuracy": 0.72}, None),
    ({"train_loss": 0.6, "train_r2": -0.01}, "training R² (-0.010) is no better"),
    ({"train_loss": 0.6, "train_r2": 0.3}, None),
    ({"train_loss": 0.6, "train_accuracy": 0.7, "steady": True}, None)])  # slow, not unstable
def test_a_final_score_no_better_than_a_constant_guess_is_a_warning(last, says):
    """The loss fell (245 → 0.65 at lr=50) yet accuracy stayed at the majority class's share."""
    import warnings
    from types import SimpleNamespace

    import torch

    from minidl_cli import experiment

    losses = ([0.9, 0.88, 0.85, 0.82, 0.8, 0.78, 0.76, 0.73, 0.7] if last.pop("steady", False)
              else [245.0, 3.0, 5.0, 2.0, 1.5, 1.2, 1.0, 0.8, 0.7])  # 10 epochs with `last`
    history = [{"train_loss": loss} for loss in losses] + [last]
    trainer = SimpleNamespace(history=history, config={"optimizer": {"lr": 50}},
                              dataset=SimpleNamespace(y_train=torch.tensor([0] * 7 + [1] * 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        experiment._warn_if_not_learning(None, trainer)
    if says is None:
        assert caught == []
    else:
        (warning,) = caught
        assert says in str(warning.message) and "lower optimizer.lr (e.g. optimizer.lr=5)" in \
            str(warning.message)

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
    assert meta(run)["status"] == "completed" and len(rows(run)) == 3


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
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["test"]["accuracy"] >= 0
    monkeypatch.undo()
    out = tmp_path / "elsewhere.json"
    assert invoke("evaluate", trained, "--out", out).exit_code == 0
    assert json.loads(out.read_text())["epoch"] == 3



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
        assert line == (f"error: {trained} is read-only (or not writable): cannot {doing}; "
                        f"copy it somewhere writable (cp -r {trained} COPY) and use the copy")
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

# --- minidl list ---------------------------------------------------------------------------


def test_list_names_every_section_and_takes_plurals():
    result = invoke("list")
    assert result.exit_code == 0
    for heading in ("layers:", "losses:", "optimizers:", "schedulers:", "datasets:"):
        assert heading in result.stdout.splitlines()
    assert "losss" not in result.stdout
    assert "threads: int | null >= 1" in result.stdout and "standardize: bool" in result.stdout
    assert "relative to the current directory" in result.stdout  # runs_dir
    for kind in ("layers", "layer", "Layers"):
        narrowed = invoke("list", kind)
        assert narrowed.exit_code == 0 and narrowed.stdout.startswith("layers:\n")
        assert "losses:" not in narrowed.stdout
    assert invoke("list", "train").stdout.startswith("train")


# --- predict reads a pipe as well as a file --------------------------------------------------


def test_predict_reads_a_pipe_and_stdin(trained, tmp_path):
    """`minidl predict RUN <(printf ...)` said "data file /dev/fd/63 not found"."""
    import threading

    from click.testing import CliRunner

    from minidl_cli.cli import main

    rows_text = "x1,x2\n0.1,0.2\n0.9,0.9\n"
    (tmp_path / "rows.csv").write_text(rows_text)
    expected = invoke("predict", trained, tmp_path / "rows.csv").stdout
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(rows_text,))
    writer.start()
    piped = invoke("predict", trained, fifo)
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # frees a writer nobody read
    writer.join()
    assert piped.exit_code == 0, piped.output
    stdin = CliRunner().invoke(main, ["predict", str(trained), "-"], input=rows_text)
    assert piped.stdout == stdin.stdout == expected and expected.count("\n") == 3
