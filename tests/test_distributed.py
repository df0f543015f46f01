"""Data-parallel training (`minidl train --nproc N`): N ranks end with the weights of one process,
write one ordinary run directory, stop together on a signal and resume; also under torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minidl_cli import distributed
from minidl_cli.runs import load_checkpoint
from tests.helpers import TINY, invoke, write_config

# float64, momentum, a step schedule, gradient clipping (of the whole batch's gradient, so
# after the all-reduce); 76 rows in batches of 25: every batch splits unevenly over 2 ranks
# (12 / 13 rows) and the last one has a single row, so rank 0 gets none.
EXACT = {
    **TINY,
    "data": {"type": "disk", "n_train": 76, "n_test": 50},
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5},
    "train": {"epochs": 4, "batch_size": 25, "dtype": "float64", "clip_grad_norm": 0.05},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def minidl(*args, cwd: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minidl_cli", *map(str, args)], cwd=cwd,
                            env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def finish(process: subprocess.Popen, code: int = 0) -> tuple[str, str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, (out, err)
    assert "Traceback" not in err, err
    return out, err


def run_of(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def same_weights(a: Path, b: Path) -> None:
    """Weights and momentum equal up to float64 rounding, and the same metrics."""
    sa, sb = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (a, b))
    assert sa["epoch"] == sb["epoch"]
    for key, value in sa["model"].items():
        assert torch.allclose(value, sb["model"][key], rtol=1e-10, atol=1e-13), key
    for i, state in sa["optimizer"]["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                assert torch.allclose(value, sb["optimizer"]["state"][i][name], rtol=1e-10,
                                      atol=1e-13), name
    for ra, rb in zip(sa["history"], sb["history"], strict=True):
        for column in ("train_loss", "test_loss", "train_accuracy", "lr"):
            assert ra[column] == pytest.approx(rb[column], rel=1e-10), column


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """EXACT trained by one process."""
    result = invoke("train", write_config(tmp_path_factory.mktemp("single"), EXACT), "-q")
    assert result.exit_code == 0, result.output
    return run_of(result.stdout)


def test_shards_cover_every_batch_once():
    for size in (1, 2, 3, 5):
        for start, stop in ((0, 25), (75, 76), (10, 13), (4, 4)):
            shards = [distributed.World(r, size, r).shard(start, stop) for r in range(size)]
            assert shards[0][0] == start and shards[-1][1] == stop
            assert all(a[1] == b[0] for a, b in zip(shards, shards[1:], strict=False))
            assert max(hi - lo for lo, hi in shards) - min(hi - lo for lo, hi in shards) <= 1


def test_a_rank_share_is_of_the_labels_the_mean_counts():
    """cross_entropy's mean divides by the labels other than ignore_index (-100: a lines-mode
    text's padding with target sequence): each rank's share is its part of those."""
    targets = torch.tensor([[-100, -100, 4], [-100, 4, 5], [4, 5, 6], [5, 6, -100],
                            [-100, -100, 7]])  # 9 labels counted: 3 | 6 over two ranks
    x = torch.zeros(5, 3, dtype=torch.int64)
    shares = [[share for _, _, share in distributed.World(r, 2, r).shards(x, targets, 5, True,
                                                                           -100)]
              for r in range(2)]
    assert shares == [[3 / 9], [6 / 9]]  # rows alone would say 2/5 and 3/5
    rows = [[share for _, _, share in distributed.World(r, 2, r).shards(x, targets, 5, True)]
            for r in range(2)]
    assert rows == [[2 / 5], [3 / 5]]  # no ignore_index (mse, l1): rows


def test_two_processes_train_a_padded_text_as_one(tmp_path):
    from tests.test_text import text_config

    path = text_config(tmp_path, target="sequence", train__dtype="float64",
                       train__epochs=2, train__clip_grad_norm=0.05)  # clips the whole batch's
    single = run_of(invoke("train", path, "-q").stdout)
    out, _ = finish(minidl("train", path, "--nproc", 2, "-q", cwd=tmp_path))
    same_weights(tmp_path / run_of(out), single)


def test_two_processes_give_the_weights_of_one(single, tmp_path):
    out, err = finish(minidl("train", write_config(tmp_path, EXACT), "--nproc", 2, "-q",
                             cwd=tmp_path))
    run = tmp_path / run_of(out)
    assert err == "" and out.strip().splitlines() == [str(run_of(out))]  # rank 0 alone speaks
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    same_weights(run, single)

    # the ordinary contract: the same files, meta.json with world_size, evaluate works
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert files == {p.relative_to(single).as_posix() for p in single.rglob("*") if p.is_file()}
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["epochs_completed"] == 4
    assert meta["world_size"] == 2 and meta["seed"] == 0 and meta["device"] == "cpu"
    assert json.loads((single / "meta.json").read_text())["world_size"] == 1
    with open(run / "metrics.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2, 3, 4]
    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epoch"] == 4


def torchrun_style(*args, cwd: Path) -> list[subprocess.Popen]:
    """Two ranks started as torchrun does: RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT."""
    env = {**ENV, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    return [minidl(*args, cwd=cwd, env={**env, "RANK": str(r)}) for r in range(2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_signal_stops_every_rank_and_torchrun_style_ranks_resume(tmp_path):
    config = write_config(tmp_path, {**EXACT, "train": {**EXACT["train"], "epochs": 100_000}})
    process = minidl("train", config, "--nproc", 2, "-q", cwd=tmp_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        metrics_csv = next((tmp_path / "runs").glob("*/metrics.csv"), None)
        if metrics_csv and len(metrics_csv.read_text().splitlines()) > 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    out, err = finish(process, 143)
    run = tmp_path / run_of(out)
    assert "interrupted by SIGTERM" in err
    meta = json.loads((run / "meta.json").read_text())
    done = meta["epochs_completed"]
    assert meta["status"] == "interrupted" and done >= 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == done

    total = f"train.epochs={done + 2}"
    (out0, err0), (out1, err1) = map(finish, torchrun_style("train", "--resume", run, total,
                                                            cwd=tmp_path))
    assert tmp_path / run_of(out0) == run  # a line per epoch on stderr (not a terminal)
    assert [line.split(":")[0] for line in err0.splitlines()] == [
        f"epoch {done + 1}/{done + 2}", f"epoch {done + 2}/{done + 2}"]
    assert out1 == err1 == ""  # rank 1 is silent
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["epochs_completed"] == done + 2
    (tmp_path / "straight").mkdir()
    result = invoke("train", write_config(tmp_path / "straight", EXACT), "-q", total)
    same_weights(run, run_of(result.stdout))


def test_bad_input_is_refused_before_any_process_starts(tmp_path, monkeypatch):
    def no_launch(*args):
        raise AssertionError("launched despite bad input")

    monkeypatch.setattr(distributed, "launch", no_launch)
    result = invoke("train", write_config(tmp_path, EXACT), "--nproc", 2, "optimizer.lr=-1")
    assert result.exit_code == 2 and "optimizer.lr" in result.stderr
    result = invoke("train", "--resume", tmp_path / "missing", "--nproc", 2)
    assert result.exit_code == 2 and "run directory not found" in result.stderr
    result = invoke("train", write_config(tmp_path, EXACT), "--nproc", 2, "--seeds", "0-1")
    assert result.exit_code == 2 and "--seeds" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_nproc_must_be_positive(tmp_path):
    result = invoke("train", write_config(tmp_path, EXACT), "--nproc", 0)
    assert result.exit_code == 2 and "--nproc" in result.stderr


def lonely_rank(tmp_path: Path, timeout: str) -> subprocess.Popen:
    """Rank 0 of 2 whose rank 1 never starts (a wrong torchrun environment)."""
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "MINIDL_DIST_TIMEOUT": timeout}
    return minidl("train", write_config(tmp_path, EXACT), "-q", cwd=tmp_path, env=env)


def test_a_lonely_rank_says_what_it_waits_for_and_obeys_ctrl_c(tmp_path):
    process = lonely_rank(tmp_path, "600")
    line = process.stderr.readline()  # after distributed.JOIN_NOTICE_S
    assert line.startswith("rank 0 of 2: waiting for the other ranks at MASTER_ADDR=127.0.0.1")
    assert "MINIDL_DIST_TIMEOUT" in line and "up to 600 s" in line
    process.send_signal(signal.SIGINT)
    out, err = finish(process, 130)  # within finish's 120 s, not the 600 s timeout
    assert not (tmp_path / "runs").exists()


def test_a_lonely_rank_times_out_with_the_fix(tmp_path, monkeypatch):
    out, err = finish(lonely_rank(tmp_path, "1"), 2)
    (line,) = err.splitlines()
    assert line.startswith("error: rank 0 of 2: the other ranks did not join at "
                           "MASTER_ADDR=127.0.0.1 MASTER_PORT=") and "within 1 s" in line
    assert "MINIDL_DIST_TIMEOUT" in line and not (tmp_path / "runs").exists()
    monkeypatch.setenv("MINIDL_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MINIDL_DIST_TIMEOUT='soon'"):
        distributed.join_timeout()
    monkeypatch.delenv("MINIDL_DIST_TIMEOUT")
    assert distributed.join_timeout() == distributed.JOIN_TIMEOUT_S
