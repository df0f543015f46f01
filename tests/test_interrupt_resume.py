"""Interruption, kill -9, resume and divergence: nothing is lost, and a resumed run ends with
the weights of an uninterrupted one; SIGINT / SIGTERM exit 130 / 143 with the run saved."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from minidl_cli import experiment
from minidl_cli.config import load_config
from minidl_cli.runs import Run, RunError, load_checkpoint
from minidl_cli.train import Interrupted, StopFlag
from tests.helpers import TINY, invoke, meta, metrics, run_of, train_tiny, write_config

# Momentum, a schedule and dropout: every piece of state a resume must restore.
STATEFUL = {
    **TINY,
    "model": [{"type": "linear", "out_features": 16}, "relu", {"type": "dropout", "p": 0.3},
              {"type": "linear", "out_features": 2}, "tanh"],
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5},
    "train": {"epochs": 6, "batch_size": 32},  # 200 points: the last batch is short
}
ADAM_COSINE = {
    **STATEFUL,
    "data": {"type": "moons", "n_train": 120, "n_test": 60, "standardize": True},
    "optimizer": {"type": "adam", "lr": 0.01},
    "scheduler": {"type": "cosine", "T_max": 6},  # explicit: a default T_max follows epochs
}


def epochs(run: Path) -> list[int]:
    return [int(row["epoch"]) for row in metrics(run)]


def same_training(a: Path, b: Path) -> None:
    """Bit-identical weights and optimizer state, identical metrics but for the clock."""
    sa, sb = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (a, b))
    assert sa["epoch"] == sb["epoch"]
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for i, state in sa["optimizer"]["state"].items():
        for name, value in state.items():
            other = sb["optimizer"]["state"][i][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert sa["scheduler"] == sb["scheduler"]
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert drop(metrics(a)) == drop(metrics(b))


DEFAULT_COSINE = {**ADAM_COSINE, "scheduler": "cosine"}  # T_max null: train.epochs


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, Path]:
    """Each stateful config trained for 6 epochs without a break."""
    out = {}
    for name, config in (("sgd", STATEFUL), ("adam", ADAM_COSINE), ("cosine", DEFAULT_COSINE)):
        tmp = tmp_path_factory.mktemp(f"straight-{name}")
        out[name] = run_of(invoke("train", write_config(tmp, config), "-q"))
    return out


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(straight, tmp_path, name):
    config = write_config(tmp_path, STATEFUL if name == "sgd" else ADAM_COSINE)
    run = run_of(invoke("train", config, "-q", "train.epochs=3"))
    assert meta(run)["status"] == "completed" and epochs(run) == [1, 2, 3]
    assert run_of(invoke("train", "--resume", run, "train.epochs=6", "-q")) == run
    assert epochs(run) == [1, 2, 3, 4, 5, 6]
    assert meta(run)["status"] == "completed" and meta(run)["epochs_completed"] == 6
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 6
    same_training(run, straight[name])


class StopAfter(StopFlag):
    """A stop request (as SIGINT's handler makes) after `polls` polls of the loop."""

    def __init__(self, polls: int, signum: int = signal.SIGINT):
        super().__init__()
        self.left, self.want = polls, signum

    def __call__(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.signum = self.want
        return super().__call__()


@pytest.mark.parametrize("polls, name", [(0, "sgd"), (17, "sgd"), (17, "cosine")])
def test_stopped_mid_epoch_then_resumed_is_bit_identical(straight, tmp_path, polls, name):
    """Stopped in the first epoch or in the middle of epoch 3; a schedule whose length
    follows train.epochs (cosine, T_max null) resumes unchanged too."""
    config = load_config(write_config(tmp_path, STATEFUL if name == "sgd" else DEFAULT_COSINE))
    run, trainer = experiment.start_run(config)
    with pytest.raises(Interrupted):
        experiment.train_run(run, trainer, stop=StopAfter(polls), plots=False)
    assert meta(run.path)["status"] == "interrupted"
    done = load_checkpoint(run.checkpoints / "last.pt")["epoch"]
    assert done == len(epochs(run.path)) == meta(run.path)["epochs_completed"]
    assert done == 0 if polls == 0 else 0 < done < 6
    assert run_of(invoke("train", "--resume", run.path, "-q")) == run.path
    same_training(run.path, straight[name])


def _snapshot(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_run_made_before_an_option_existed_resumes(tmp_path):
    """An option added to minidl later (its default filled in now) is no change of the
    experiment; setting it on resume is."""
    config = {**TINY, "loss": "cross_entropy", "train": {**TINY["train"], "epochs": 1}}
    run = run_of(invoke("train", write_config(tmp_path, config), "-q"))
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["loss"].pop("ignore_index") == -100
    (run / "config.yaml").write_text(yaml.safe_dump(stored))  # as a run of an older minidl
    refused = invoke("train", "--resume", run, "train.epochs=3", "loss.ignore_index=-1", "-q")
    assert refused.exit_code == 2 and "cannot change loss.ignore_index" in refused.output
    resumed = invoke("train", "--resume", run, "train.epochs=2", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert meta(run)["epochs_completed"] == 2


def test_setting_an_option_made_since_the_run_is_refused_in_either_spelling(tmp_path):
    """A list item's key is set as model[0].init or model.0.init: either way, an option the
    stored config lacks (a run of an older minidl) that the resume sets is a change."""
    config = {**STATEFUL, "train": {**STATEFUL["train"], "epochs": 1}}
    run = run_of(invoke("train", write_config(tmp_path, config), "-q"))
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["model"][0].pop("init") == "xavier_uniform"
    (run / "config.yaml").write_text(yaml.safe_dump(stored))  # as a run of an older minidl
    for key in ("model[0].init", "model.0.init"):
        refused = invoke("train", "--resume", run, "train.epochs=2", f"{key}=kaiming_normal")
        assert refused.exit_code == 2 and "cannot change model[0].init" in refused.output, \
            refused.output
    assert meta(run)["epochs_completed"] == 1


def test_refused_resumes_leave_the_run_untouched(tmp_path):
    config = load_config(write_config(tmp_path, STATEFUL))
    run, trainer = experiment.start_run(config)
    with pytest.raises(Interrupted):
        experiment.train_run(run, trainer, stop=StopAfter(20), plots=False)
    assert trainer.epoch >= 1
    before = _snapshot(run.path)
    for overrides in (["model.0.out_features=4"], ["data.n_train=100"], ["optimizer.lr=1"],
                      ["seed=5"], ["scheduler=null"], ["train.batch_size=10"],
                      ["train.epochs=0"], ["model.1=rlu"], [f"train.epochs={trainer.epoch}"]):
        result = invoke("train", "--resume", run.path, *overrides)
        assert result.exit_code == 2, (overrides, result.output)
        assert "Traceback" not in result.output and result.stderr.startswith("error: ")
        assert _snapshot(run.path) == before, overrides
    assert "cannot change optimizer.lr" in invoke("train", "--resume", run.path,
                                                  "optimizer.lr=1").stderr
    # what may change on resume: the length, and how often checkpoints are kept
    result = invoke("train", "--resume", run.path, "train.epochs=4", "train.checkpoint_every=2",
                    "-q")
    assert run_of(result) == run.path and epochs(run.path) == [1, 2, 3, 4]
    assert (run.checkpoints / "epoch_0004.pt").is_file()
    result = invoke("train", "--resume", run.path)
    assert result.exit_code == 2
    assert "already trained 4 epochs, and train.epochs is 4" in result.stderr
    assert "train.epochs=N" in result.stderr


# --- real signals on a real process -------------------------------------------------------

LONG = {**TINY, "train": {"epochs": 100_000, "batch_size": 50}}


def start_training(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    config = write_config(tmp_path, LONG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "minidl_cli", "train", str(config), "-q"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    return process, tmp_path / "runs"


def wait_for_rows(process: subprocess.Popen, runs_dir: Path, rows: int) -> Path:
    """The run directory, once its metrics.csv holds at least `rows` epochs."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for metrics_csv in runs_dir.glob("*/metrics.csv"):
            if len(metrics_csv.read_text().splitlines()) > rows and (
                    metrics_csv.parent / "checkpoints" / "last.pt").exists():
                return metrics_csv.parent
        time.sleep(0.02)
    process.kill()
    raise AssertionError("training did not start in time")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])  # SIGHUP: its terminal closed
def test_a_signal_saves_the_run_and_resume_completes_it(tmp_path, signum):
    process, runs_dir = start_training(tmp_path)
    run = wait_for_rows(process, runs_dir, 1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signum == {signal.SIGINT: 130, signal.SIGTERM: 143,
                                                   signal.SIGHUP: 129}[signum]
    assert "Traceback" not in stderr + stdout
    assert f"minidl train --resume {run}" in stderr and signal.Signals(signum).name in stderr
    assert stdout.strip().splitlines()[-1] == str(run)
    info = meta(run)
    assert info["status"] == "interrupted" and info["finished_at"]
    assert "train" in info["argv"]
    done = info["epochs_completed"]
    assert done >= 1 and load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == done
    assert epochs(run) == list(range(1, done + 1))

    assert run_of(invoke("train", "--resume", run, f"train.epochs={done + 2}", "-q")) == run
    assert epochs(run) == list(range(1, done + 3))
    assert meta(run)["status"] == "completed" and "resumed_at" in meta(run)


@pytest.mark.parametrize("rows", [0, 2])  # before the first epoch ends; a few epochs in
def test_kill_9_then_resume_loses_nothing(tmp_path, rows):
    process, runs_dir = start_training(tmp_path)
    run = wait_for_rows(process, runs_dir, rows)
    process.kill()
    process.communicate(timeout=60)

    state = load_checkpoint(run / "checkpoints" / "last.pt")  # loads, whatever the moment
    assert meta(run)["status"] == "running"  # it had no chance to say otherwise
    stale = run / "checkpoints" / ".last.pt.x1y2.tmp"  # as a kill in the middle of a save leaves
    stale.write_bytes(b"half a checkpoint")
    total = state["epoch"] + 2
    assert run_of(invoke("train", "--resume", run, f"train.epochs={total}", "-q")) == run
    assert epochs(run) == list(range(1, total + 1))  # each epoch exactly once, in order
    assert meta(run)["status"] == "completed"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == total
    assert not stale.exists()


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path):
    """Two trainers on one run would interleave their checkpoints and metrics: the second
    gets a one-line error and exit 2, and once the first stops, the run resumes."""
    process, runs_dir = start_training(tmp_path)
    run = wait_for_rows(process, runs_dir, 1)
    try:
        second = subprocess.run([sys.executable, "-m", "minidl_cli", "train", "--resume",
                                 str(run), "train.epochs=200000", "-q"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("error: ") and second.stderr.count("\n") == 1
        assert "being trained by another minidl process" in second.stderr
        assert "Traceback" not in second.stderr and second.stdout == ""
        assert "resumed_at" not in meta(run) and load_config(run / "config.yaml")[
            "train"]["epochs"] == 100_000  # the second process wrote nothing
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 130
    done = meta(run)["epochs_completed"]
    assert epochs(run) == list(range(1, done + 1))  # the first run's rows, each once
    assert run_of(invoke("train", "--resume", run, f"train.epochs={done + 1}", "-q")) == run


def test_the_lock_is_held_while_training_and_released_after(tmp_path):
    """In one process: a Run holding the lock refuses a resume; a refused or finished
    training releases it."""
    config = load_config(write_config(tmp_path, TINY))
    run, trainer = experiment.start_run(config)
    holder = Run.open(run.path)
    with pytest.raises(RunError, match="being trained by another minidl process"):
        holder.lock()  # start_run holds it until train_run ends
    experiment.train_run(run, trainer, plots=False)
    holder.lock()
    before = _snapshot(run.path)
    result = invoke("train", "--resume", run.path, "train.epochs=5")
    assert result.exit_code == 2 and "being trained by another" in result.stderr
    assert _snapshot(run.path) == before
    holder.unlock()
    result = invoke("train", "--resume", run.path)  # refused: nothing left to train
    assert result.exit_code == 2 and "already trained" in result.stderr
    assert run_of(invoke("train", "--resume", run.path, "train.epochs=4", "-q")) == run.path
    holder.lock()  # neither the refused resume nor the finished one kept it
    holder.unlock()


# --- divergence, and signals outside the loop ---------------------------------------------

LINEAR = {**TINY, "model": [{"type": "linear", "out_features": 2}]}


def test_divergence_in_the_first_epoch_keeps_the_initial_checkpoint(tmp_path):
    result = invoke("train", write_config(tmp_path, LINEAR), "-q", "optimizer.lr=1e6")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "in epoch 1" in result.stderr and "smaller learning rate" in result.stderr
    assert "optimizer.lr=100000" in result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    assert meta(run)["status"] == "failed" and epochs(run) == []
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 0  # initial weights
    assert invoke("evaluate", run).exit_code == 0


def test_divergence_later_keeps_the_last_good_checkpoint(tmp_path):
    growing = {**LINEAR, "optimizer": {"type": "sgd", "lr": 0.01},
               "scheduler": {"type": "step", "step_size": 1, "gamma": 1000.0}}
    result = invoke("train", write_config(tmp_path, growing), "-q", "train.epochs=6")
    assert result.exit_code == 1 and "Traceback" not in result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    good = epochs(run)
    assert good and f"in epoch {len(good) + 1}" in result.stderr
    assert f"checkpoint (epoch {len(good)})" in result.stderr
    assert meta(run)["status"] == "failed" and meta(run)["epochs_completed"] == len(good)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == len(good)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    evaluated = json.loads(invoke("evaluate", run, "--json").stdout)
    assert evaluated["test"]["loss"] == pytest.approx(float(metrics(run)[-1]["test_loss"]))


def test_a_signal_while_drawing_the_pictures_keeps_the_run_completed(tmp_path, monkeypatch):
    def interrupted(run, trainer):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(experiment, "draw_plots", interrupted)
    result = invoke("train", write_config(tmp_path), "-q", "train.epochs=1")
    assert result.exit_code == 130 and "Traceback" not in result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    assert meta(run)["status"] == "completed" and f"minidl plot {run}" in result.stderr


def test_ctrl_c_before_training_exits_130_and_writes_nothing(tmp_path, monkeypatch):
    def interrupted(config, world=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "start_run", interrupted)
    result = invoke("train", write_config(tmp_path), "-q")
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "interrupted" in result.stderr and not (tmp_path / "runs").exists()


# --- a run survives losing its reader ------------------------------------------------------


def test_a_closed_pipe_does_not_stop_or_fail_the_run(tmp_path):
    """`minidl train ... 2>&1 | head -1`: the reader is gone before the first progress line;
    training goes on quietly, the run completes with its pictures, exit 0."""
    config = write_config(tmp_path, TINY)
    process = subprocess.Popen([sys.executable, "-m", "minidl_cli", "train", str(config)],
                               cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    process.stdout.close()  # the reader goes away (as head does after one line)
    assert process.wait(timeout=120) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert meta(run)["status"] == "completed" and len(metrics(run)) == 3
    assert (run / "plots" / "loss.png").is_file()


@pytest.mark.parametrize("terminal", [True, False])  # the bar, or a line per epoch (a log)
@pytest.mark.parametrize("code", [errno.EPIPE, errno.EIO])
def test_progress_outlives_its_reader(monkeypatch, code, terminal):
    """EPIPE (a closed pipe) and EIO (a closed terminal) under the progress bar: no exception;
    stderr is pointed at /dev/null (not here: it would blind pytest) and training goes on."""
    from minidl_cli.cli import common
    from minidl_cli.cli.train import progress_bar

    class Gone:
        def isatty(self):
            return terminal

        def write(self, text):
            raise OSError(code, os.strerror(code))

        def flush(self):
            pass

    silenced = []
    monkeypatch.setattr(sys, "stderr", Gone())
    monkeypatch.setattr(common, "to_devnull", silenced.append)
    with progress_bar(2, 0, True, lambda row: f"loss {row['train_loss']}") as on_epoch:
        on_epoch({"epoch": 1, "train_loss": 0.5})
        on_epoch({"epoch": 2, "train_loss": 0.4})
    assert silenced and all(stream is sys.stderr for stream in silenced)  # (not for real here)


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
    lrs = [float(row["lr"]) for row in metrics(run)]
    expected = [cosine_lr(e, 4) for e in range(1, 5)] + [cosine_lr(e, 10) for e in range(5, 11)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert all(a > b > 0 for a, b in zip(lrs[4:], lrs[5:], strict=False))  # no 0, no restart
    assert yaml.safe_load((run / "config.yaml").read_text())["scheduler"]["T_max"] is None
    # the length may be set on resume too; a T_max the user set stays
    assert run_of(invoke("train", "--resume", run, "train.epochs=12", "scheduler.T_max=12",
                         "-q")) == run
    assert float(metrics(run)[-1]["lr"]) == pytest.approx(cosine_lr(12, 12))
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
