"""`minidl train --seeds`: a group of runs, its summary, and group-level evaluate/plot."""

import csv
import json
from pathlib import Path

import pytest
import torch

from minidl_cli.seeds import parse_seeds, statistics
from tests.helpers import invoke, write_config


@pytest.mark.parametrize("text,seeds", [("0-3", [0, 1, 2, 3]), ("0,3,5", [0, 3, 5]),
                                        ("4-5,1", [1, 4, 5]), ("7", [7])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "3-1", "-2", "1,,2"])
def test_bad_seeds_are_a_usage_error(text, tmp_path):
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds(text)
    result = invoke("train", write_config(tmp_path), "--seeds", text)
    assert result.exit_code == 2 and "--seeds" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text,why", [("99999999999999999999", "at most 2\\*\\*63 - 1"),
                                      ("0-3,9223372036854775808", "at most 2\\*\\*63 - 1"),
                                      ("0-99999999999999999999", "at most 2\\*\\*63 - 1"),
                                      ("0-100000", "more than 10000 seeds"),
                                      ("0-6000,10000-15000", "more than 10000 seeds")])
def test_seeds_out_of_range_or_too_many_are_refused_before_any_list(text, why, tmp_path):
    """A seed past a config's seed range, or a range of millions (it filled the memory
    building the list), is one usage line; the largest seed a config takes is accepted."""
    with pytest.raises(ValueError, match=why):
        parse_seeds(text)
    result = invoke("train", write_config(tmp_path), "--seeds", text)
    assert result.exit_code == 2 and "--seeds" in result.output
    assert not (tmp_path / "runs").exists()
    assert parse_seeds("9223372036854775807") == [2**63 - 1]


def test_statistics_use_the_sample_std():
    st = statistics([0.01, 0.02, 0.03])
    assert st["mean"] == pytest.approx(0.02) and st["std"] == pytest.approx(0.01)
    assert (st["min"], st["max"]) == (0.01, 0.03)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_seed_group_summary_evaluate_and_plot(tmp_path, jobs):
    result = invoke("train", write_config(tmp_path), "--seeds", "0-2", "--jobs", jobs,
                    "train.epochs=2", "--quiet")
    assert result.exit_code == 0, result.output
    group = Path(result.stdout.strip().splitlines()[-1])
    assert "test_error" in result.stdout and "±" in result.stdout

    rows = list(csv.DictReader(open(group / "summary.csv")))
    assert [int(r["seed"]) for r in rows] == [0, 1, 2]
    assert all(r["status"] == "completed" and r["epochs"] == "2" for r in rows)
    for row in rows:
        member = group / f"seed-{int(row['seed']):04d}"
        meta = json.loads((member / "meta.json").read_text())
        assert meta["seed"] == int(row["seed"]) and meta["status"] == "completed"
        last = list(csv.DictReader(open(member / "metrics.csv")))[-1]
        assert float(row["test_error"]) == pytest.approx(1 - float(last["test_accuracy"]))
    assert len({r["test_loss"] for r in rows}) == 3  # different seeds, different runs

    evaluated = invoke("evaluate", group, "--json")
    assert evaluated.exit_code == 0
    assert [r["epoch"] for r in json.loads(evaluated.stdout)] == [2, 2, 2]

    plotted = invoke("plot", group)
    assert plotted.exit_code == 0, plotted.output
    assert (group / "plots" / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_a_member_is_a_run_like_any_other_while_it_trains(tmp_path, monkeypatch):
    """Each seed's run starts as `minidl train` starts one: locked against a second trainer
    (a `--resume` of that member), with an epoch-0 last.pt and a metrics header at once."""
    from minidl_cli import experiment
    from minidl_cli.runs import Run, RunError, load_checkpoint

    seen = []
    real = experiment.train_run

    def checking(run, trainer, *args, **kwargs):
        with pytest.raises(RunError, match="being trained by another"):
            Run.open(run.path).lock()
        assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == 0
        assert (run.path / "metrics.csv").read_text().startswith("epoch,")
        seen.append(run.path.name)
        return real(run, trainer, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_run", checking)
    result = invoke("train", write_config(tmp_path), "--seeds", "0-1", "train.epochs=1", "-q")
    assert result.exit_code == 0, result.output
    assert seen == ["seed-0000", "seed-0001"]
    group = Path(result.stdout.strip().splitlines()[-1])
    Run.open(group / "seed-0000").lock()  # released when its training ended


def test_a_stop_leaves_queued_seeds_unstarted_and_lists_every_seed(tmp_path):
    """Stop (as Ctrl-C's flag) once seed 0 has finished: seeds 1-2 never start, no empty
    folder is left for them, and summary.csv lists seed 0's results and the others' status."""
    from minidl_cli.config import load_config
    from minidl_cli.seeds import run_seeds
    from minidl_cli.train import StopFlag

    flag = StopFlag()
    config = load_config(write_config(tmp_path), ["train.epochs=1"])
    group, rows = run_seeds(config, [0, 1, 2], 1, lambda row: setattr(flag, "signum", 2), flag)
    assert [(r["seed"], r["status"]) for r in rows] == [
        (0, "completed"), (1, "not started"), (2, "not started")]
    summary = list(csv.DictReader(open(group / "summary.csv")))
    assert [(r["seed"], r["status"]) for r in summary] == [
        ("0", "completed"), ("1", "not started"), ("2", "not started")]
    assert float(summary[0]["test_loss"]) > 0 and summary[1]["test_loss"] == ""
    info = json.loads((group / "group.json").read_text())
    assert info["status"] == "interrupted" and info["members"] == ["seed-0000"]
    assert sorted(p.name for p in group.glob("seed-*")) == ["seed-0000"]


def test_ctrl_c_stops_a_parallel_group_at_once(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while seeds 0-1
    train in two workers and 2-3 wait: 0-1 are saved and marked interrupted, 2-3 never
    start, summary.csv lists all four, exit 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = write_config(tmp_path, train={"epochs": 100_000, "batch_size": 50})
    process = subprocess.Popen(
        [sys.executable, "-m", "minidl_cli", "train", str(config), "--seeds", "0-3",
         "--jobs", "2", "-q"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def training(seed: int) -> bool:  # a metrics row written: past its first epoch
        files = list(tmp_path.glob(f"runs/*/seed-000{seed}/metrics.csv"))
        return bool(files) and len(files[0].read_text().splitlines()) > 1

    deadline = time.monotonic() + 120
    while not (training(0) and training(1)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "seeds 2, 3 were not started" in err
    assert "seeds 0, 1 were saved mid-training" in err
    (group,) = (tmp_path / "runs").iterdir()
    assert out.strip().splitlines()[-1] == str(group)
    summary = {r["seed"]: r for r in csv.DictReader(open(group / "summary.csv"))}
    assert [summary[s]["status"] for s in "0123"] == [
        "interrupted", "interrupted", "not started", "not started"]
    for seed in "01":
        meta = json.loads((group / f"seed-000{seed}" / "meta.json").read_text())
        assert meta["status"] == "interrupted" and meta["epochs_completed"] >= 1
        assert int(summary[seed]["epochs"]) >= 1
    assert not (group / "seed-0002").exists() and not (group / "seed-0003").exists()


def test_the_interrupt_report_tells_saved_seeds_from_those_with_no_epoch(tmp_path, capsys):
    """A seed stopped before its first epoch ended was said to be "saved mid-training"."""
    from minidl_cli.cli.sweep import report_interrupted_group

    rows = [{"seed": 0, "status": "completed", "epochs": 3},
            {"seed": 1, "status": "interrupted", "epochs": 2},
            {"seed": 4, "status": "interrupted", "epochs": 0},
            {"seed": 5, "status": "interrupted", "epochs": 0},
            {"seed": 6, "status": "not started", "epochs": 0}]
    with pytest.raises(SystemExit) as stopped:
        report_interrupted_group(tmp_path, rows, 2)
    assert stopped.value.code == 130
    lines = capsys.readouterr().err.splitlines()
    assert "seed 1 was saved mid-training; resume one with: minidl train --resume " \
           f"{tmp_path / 'seed-0001'}" in lines
    assert "seeds 4, 5 were stopped before their first epoch ended: nothing trained yet" in lines
    assert "seed 6 was not started" in lines
    assert f"finish them with: minidl train --resume {tmp_path}" in lines


def test_a_seed_group_given_as_a_run_says_so_and_names_a_member(tmp_path):
    """predict and load of a group said "checkpoint not found: GROUP/checkpoints"."""
    import minidl_cli
    from minidl_cli.runs import RunError

    result = invoke("train", write_config(tmp_path), "-q", "--seeds", "0-1", "train.epochs=1")
    group = Path(result.stdout.strip().splitlines()[-1])
    (tmp_path / "new.csv").write_text("x1,x2\n0.5,0.5\n")
    says = f"{group} is a seed group (from --seeds), not a run; give one of its member runs, " \
           f"e.g. {group / 'seed-0000'}"
    refused = invoke("predict", group, tmp_path / "new.csv")
    assert refused.exit_code == 2 and says in refused.output, refused.output
    assert "checkpoint" not in refused.output
    with pytest.raises(RunError, match="is a seed group"):
        minidl_cli.load(group)
    assert invoke("predict", group / "seed-0000", tmp_path / "new.csv").exit_code == 0


def test_a_diverged_seed_says_why_and_is_left_out_of_the_statistics(tmp_path):
    """Seeds whose loss diverges are `failed` with the single run's reason, kept in their
    meta.json; the summary counts only completed seeds and prints no nan% statistics."""
    config = write_config(tmp_path, model=[{"type": "linear", "out_features": 8}, "relu",
                                           {"type": "linear", "out_features": 2}])
    result = invoke("train", config, "train.epochs=2", "optimizer.lr=1e9", "--seeds", "0-1")
    assert result.exit_code == 1 and "nan%" not in result.output, result.output
    assert "seed    0: failed after 0 epochs: the training loss became" in result.output
    assert "no seed of 2 completed" in result.stdout
    group = Path(result.stdout.strip().splitlines()[-1])
    reason = json.loads((group / "seed-0001" / "meta.json").read_text())["reason"]
    assert "smaller learning rate, e.g. optimizer.lr=1e+08" in reason
    assert f"seed 1 failed: {reason}" in result.output


@pytest.mark.parametrize("collection", [["--seeds", "0-3"],
                                        ["--sweep", "optimizer.lr=0.1,0.2,0.3"]],
                         ids=["seed group", "sweep"])
def test_a_second_ctrl_c_while_waiting_on_the_workers_ends_like_the_first(tmp_path, monkeypatch,
                                                                          collection):
    """Ctrl-C twice while the parent waits on its --jobs 2 workers: the second raised
    train.Interrupted out of the wait (a traceback, exit 1). Now it ends the wait: exit 130,
    the summary lists every member (none completed: they were stopped) and says how to
    finish them."""
    import os
    import signal

    from minidl_cli import seeds

    calls = []

    def wait_then_signal(*args, **kwargs):  # the terminal's Ctrl-C, twice, during the wait
        calls.append(1)
        if len(calls) <= 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_wait(*args, **kwargs)

    real_wait = seeds.wait
    monkeypatch.setattr(seeds, "wait", wait_then_signal)
    config = write_config(tmp_path, train={"epochs": 100_000, "batch_size": 50})
    result = invoke("train", config, *collection, "--jobs", "2", "-q")
    assert len(calls) >= 2  # the second signal came from within the wait
    assert result.exit_code == 130, result.output
    (path,) = (tmp_path / "runs").iterdir()
    assert f"finish them with: minidl train --resume {path}" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(path)
    rows = list(csv.DictReader(open(path / "summary.csv")))
    assert len(rows) == (4 if "--seeds" in collection else 3)
    assert all(row["status"] != "completed" for row in rows)

    info = json.loads((path / ("group.json" if "--seeds" in collection else "sweep.json"))
                      .read_text())
    assert info["status"] == "interrupted"


def test_plot_overlays_a_seed_group_as_its_mean_and_band_beside_a_run(tmp_path):
    """`minidl plot GROUP RUN --out DIR` was refused ("is a seed group, not a run") although
    the README says plot overlays several runs and gives a seed group mean ± std bands."""
    from minidl_cli.plots.curves import read_metrics
    from minidl_cli.plots.overlays import group_metrics

    grouped = invoke("train", write_config(tmp_path), "--seeds", "0-2", "train.epochs=2", "-q")
    group = Path(grouped.stdout.strip().splitlines()[-1])
    run = Path(invoke("train", write_config(tmp_path), "train.epochs=3", "-q")
               .stdout.strip().splitlines()[-1])
    result = invoke("plot", group, run, "--out", tmp_path / "both")
    assert result.exit_code == 0, result.output
    for name in ("loss", "accuracy"):
        assert (tmp_path / "both" / f"{name}.png").read_bytes().startswith(b"\x89PNG")

    members = [read_metrics(group / f"seed-000{s}" / "metrics.csv") for s in range(3)]
    drawn = group_metrics([group / f"seed-000{s}" for s in range(3)])
    assert drawn["epoch"] == [1.0, 2.0]
    for key in ("test_loss", "train_accuracy"):
        curves = torch.tensor([m[key] for m in members], dtype=torch.float64)
        assert drawn[key] == pytest.approx(curves.mean(0).tolist())
        assert drawn[f"{key}_std"] == pytest.approx(curves.std(0).tolist())  # n - 1

    for s in range(3):  # as a group stopped before any member finished its first epoch
        (group / f"seed-000{s}" / "metrics.csv").unlink()
    refused = invoke("plot", group, run, "--out", tmp_path / "none")
    assert refused.exit_code == 2 and len(refused.output.splitlines()) == 1, refused.output
    assert f"{group}: no member of this seed group has trained an epoch; resume it first: " \
           f"minidl train --resume {group}" in refused.output
    assert not (tmp_path / "none").exists()


def test_an_interrupt_that_no_command_catches_exits_128_plus_the_signal(tmp_path, monkeypatch):
    """train.Interrupted (a second signal) escaping a command was a traceback and exit 1;
    the CLI's error handler makes it one line and exit 128 + signal, like Ctrl-C."""
    import signal

    from minidl_cli import seeds
    from minidl_cli.train import Interrupted

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(seeds, "run_seeds", interrupted)
    result = invoke("train", write_config(tmp_path), "--seeds", "0-1", "-q")
    assert result.exit_code == 143, result.output
    assert result.stderr.strip() == "interrupted by SIGTERM"
