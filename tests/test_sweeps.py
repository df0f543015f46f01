"""`minidl train --sweep`: the grid, its directory and summary, a stop and `--resume`."""

import csv
import json
import sys
from pathlib import Path

import pytest

from minidl_cli.sweeps import parse_sweeps, point_name, points
from tests.helpers import invoke, meta, run_of, write_config


def test_the_grid_is_every_combination_in_order():
    grid = parse_sweeps(["optimizer.lr=0.01,0.1", "model[0].out_features=4,8,16"])
    assert grid == [("optimizer.lr", ["0.01", "0.1"]),
                    ("model.0.out_features", ["4", "8", "16"])]
    assert [tuple(p.values()) for p in points(grid)][:4] == [
        ("0.01", "4"), ("0.01", "8"), ("0.01", "16"), ("0.1", "4")]
    assert len(points(grid)) == 6
    assert parse_sweeps(["model.0.x=[1,2],{a: 1, b: 2}"]) == [
        ("model.0.x", ["[1,2]", "{a: 1, b: 2}"])]  # commas inside brackets do not split
    assert point_name({"optimizer.lr": "0.1", "data.path": "a/b"}) == \
        "optimizer.lr=0.1,data.path=a_b"


@pytest.mark.parametrize("args,needle", [
    (["--sweep", "optimizer.lrr=0.1,0.2"], "optimizer.lrr"),
    (["--sweep", "optimizer.lr="], "empty value"),
    (["--sweep", "optimizer.lr=0.1,,0.2"], "empty value"),
    (["--sweep", "optimizer.lr=0.1", "--sweep", "optimizer.lr=0.2"], "given twice"),
    (["--sweep", "optimizer.lr=0.1,0.2", "optimizer.lr=0.3"], "also set by the override"),
    (["--sweep", "optimizer.lr"], "expected KEY=V1,V2"),
    (["--sweep", "seed=1,2"], "--seeds 1,2"),  # would train the same seed twice
    (["--sweep", "runs_dir=a,b"], "one runs_dir"),
    (["--sweep", "optimizer.lr=0.1,0.2", "--nproc", "2"], "--jobs"),
    (["--sweep", "optimizer.lr=0.1,.10"], ".10 repeats 0.1 (the same value)"),
    (["--sweep", "optimizer.lr=1e-3,0.001"], "0.001 repeats 1e-3"),  # YAML 1.1 reads a str
])
def test_bad_sweep_specs_are_one_line_and_exit_2(tmp_path, args, needle):
    result = invoke("train", write_config(tmp_path), "-q", *args)
    assert result.exit_code == 2 and needle in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_sweep_with_resume_is_refused(tmp_path):
    run = run_of(invoke("train", write_config(tmp_path), "-q", "train.epochs=1"))
    result = invoke("train", "--resume", run, "--sweep", "optimizer.lr=0.1,0.2")
    assert result.exit_code == 2 and "--sweep" in result.output and "--resume" in result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_a_parallel_sweep_of_runs_writes_its_grid_and_summary(tmp_path):
    result = invoke("train", write_config(tmp_path), "-q", "train.epochs=1", "--jobs", "2",
                    "--sweep", "optimizer.lr=0.01,0.5", "--sweep", "model.0.out_features=4,8")
    sweep = run_of(result)
    info = json.loads((sweep / "sweep.json").read_text())
    assert info["keys"] == ["optimizer.lr", "model.0.out_features"]
    assert info["values"] == {"optimizer.lr": [0.01, 0.5], "model.0.out_features": [4, 8]}
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["optimizer.lr"], r["model.0.out_features"]) for r in rows] == [
        ("0.01", "4"), ("0.01", "8"), ("0.5", "4"), ("0.5", "8")]
    for row, point in zip(rows, info["points"], strict=True):
        run = sweep / point["name"]
        stored = (run / "config.yaml").read_text()
        assert f"lr: {row['optimizer.lr']}" in stored and meta(run)["status"] == "completed"
        last = list(csv.DictReader(open(run / "metrics.csv")))[-1]
        assert float(row["test_loss_mean"]) == pytest.approx(float(last["test_loss"]))
        assert row["seeds"] == "1" and row["status"] == "completed"
    assert len({r["test_loss_mean"] for r in rows}) == 4
    assert len({meta(sweep / p["name"])["seed"] for p in info["points"]}) == 1  # one seed


def test_a_stopped_sweep_of_seed_groups_resumes_to_completion(tmp_path):
    """Stopped after its first member (as by Ctrl-C's flag): the others never start;
    `--resume SWEEP train.epochs=2` starts them and extends the finished one."""
    from minidl_cli import sweeps
    from minidl_cli.train import StopFlag

    grid = parse_sweeps(["optimizer.lr=0.01,0.1"])
    resolved = sweeps.resolve_points(write_config(tmp_path), ["train.epochs=1"], grid, None)
    flag = StopFlag()
    sweep, rows = sweeps.run_sweep(grid, resolved, [0, 1], 1,
                                   lambda point, row: setattr(flag, "signum", 2), flag)
    assert [(r["seeds"], r["status"]) for r in rows] == [(1, "interrupted"), (0, "not started")]
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "interrupted"
    first = sweep / "optimizer.lr=0.01"
    assert (first / "seed-0000").is_dir() and not (first / "seed-0001").exists()
    assert [r["status"] for r in csv.DictReader(open(sweep / "summary.csv"))] == [
        "interrupted", "not started"]

    result = invoke("train", "--resume", sweep, "train.epochs=2", "-q", "--jobs", "2")
    assert run_of(result) == sweep
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["seeds"], r["status"]) for r in rows] == [("2", "completed")] * 2
    for point in ("optimizer.lr=0.01", "optimizer.lr=0.1"):
        group = json.loads((sweep / point / "group.json").read_text())
        assert group["status"] == "completed" and group["members"] == ["seed-0000", "seed-0001"]
        for seed in (0, 1):
            member = sweep / point / f"seed-000{seed}"
            assert meta(member)["epochs_completed"] == 2 and meta(member)["seed"] == seed
    again = invoke("train", "--resume", sweep, "-q")  # nothing left to do
    assert again.exit_code == 0 and run_of(again) == sweep
    fewer = invoke("train", "--resume", sweep, "train.epochs=1", "-q")
    assert fewer.exit_code == 2
    assert "has already trained 2 epochs, and train.epochs is 1" in fewer.output


def test_resume_cannot_set_a_swept_key(tmp_path):
    sweep = run_of(invoke("train", write_config(tmp_path), "-q", "--sweep", "train.epochs=1,2"))
    result = invoke("train", "--resume", sweep, "train.epochs=3", "-q")
    assert result.exit_code == 2, result.output
    assert "cannot set train.epochs when resuming" in result.output and "swept" in result.output
    assert [meta(sweep / f"train.epochs={n}")["epochs_completed"] for n in (1, 2)] == [1, 2]


def test_resume_finishes_a_stopped_seed_group(tmp_path):
    from minidl_cli.config import load_config
    from minidl_cli.seeds import run_seeds
    from minidl_cli.train import StopFlag

    flag = StopFlag()
    config = load_config(write_config(tmp_path), ["train.epochs=1"])
    group, _ = run_seeds(config, [0, 1, 2], 1, lambda row: setattr(flag, "signum", 2), flag)
    result = invoke("train", "--resume", group, "-q")
    assert run_of(result) == Path(group) and "±" in result.stdout
    summary = list(csv.DictReader(open(group / "summary.csv")))
    assert [(r["seed"], r["status"]) for r in summary] == [
        ("0", "completed"), ("1", "completed"), ("2", "completed")]
    assert len({r["test_loss"] for r in summary}) == 3


def test_a_resumed_seed_group_keeps_the_wall_time_its_members_recorded(tmp_path):
    """Seed 0 finished before the stop: the resume trains 1 and 2 and leaves seed 0's
    wall_s as it was; a member stopped half-way adds its earlier time to the resume's."""
    from minidl_cli.config import load_config
    from minidl_cli.seeds import run_seeds
    from minidl_cli.train import StopFlag

    flag = StopFlag()
    config = load_config(write_config(tmp_path), ["train.epochs=1"])
    group, _ = run_seeds(config, [0, 1, 2], 1, lambda row: setattr(flag, "signum", 2), flag)
    before = {r["seed"]: r["wall_s"] for r in csv.DictReader(open(group / "summary.csv"))}
    assert float(before["0"]) > 0 and before["1"] == before["2"] == ""
    assert invoke("train", "--resume", group, "-q").exit_code == 0
    after = {r["seed"]: r["wall_s"] for r in csv.DictReader(open(group / "summary.csv"))}
    assert after["0"] == before["0"] and float(after["1"]) > 0 and float(after["2"]) > 0
    longer = invoke("train", "--resume", group, "-q", "train.epochs=2")
    assert longer.exit_code == 0, longer.output
    extended = {r["seed"]: r["wall_s"] for r in csv.DictReader(open(group / "summary.csv"))}
    assert all(float(extended[s]) > float(after[s]) for s in ("0", "1", "2"))


def test_a_resumed_sweep_keeps_the_wall_time_of_its_finished_members(tmp_path):
    from minidl_cli import sweeps
    from minidl_cli.train import StopFlag

    grid = parse_sweeps(["optimizer.lr=0.01,0.1"])
    resolved = sweeps.resolve_points(write_config(tmp_path), ["train.epochs=1"], grid, None)
    flag = StopFlag()
    sweep, _ = sweeps.run_sweep(grid, resolved, [0, 1], 1,
                                lambda point, row: setattr(flag, "signum", 2), flag)
    first = sweep / "optimizer.lr=0.01" / "summary.csv"
    before = {r["seed"]: r["wall_s"] for r in csv.DictReader(open(first))}
    assert float(before["0"]) > 0
    assert invoke("train", "--resume", sweep, "-q").exit_code == 0
    after = {r["seed"]: r["wall_s"] for r in csv.DictReader(open(first))}
    assert after["0"] == before["0"] and float(after["1"]) > 0


def test_ctrl_c_stops_a_parallel_sweep_and_resume_finishes_it(tmp_path):
    """Ctrl-C (SIGINT to the process group) while two points train in two workers and two
    wait: exit 130, the running ones saved as interrupted, the queued ones never started;
    `--resume SWEEP train.epochs=N` then finishes all four."""
    import os
    import signal
    import subprocess
    import time

    config = write_config(tmp_path, train={"epochs": 100_000, "batch_size": 50})
    process = subprocess.Popen(
        [sys.executable, "-m", "minidl_cli", "train", str(config), "--jobs", "2", "-q",
         "--sweep", "optimizer.lr=0.01,0.02", "--sweep", "model.0.out_features=4,8"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def training() -> int:  # members past their first epoch
        return sum(len(p.read_text().splitlines()) > 1
                   for p in tmp_path.glob("runs/*/*/metrics.csv"))

    deadline = time.monotonic() + 120
    while training() < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "minidl train --resume" in err
    (sweep,) = (tmp_path / "runs").iterdir()
    assert out.strip().splitlines()[-1] == str(sweep)
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert sorted(r["status"] for r in rows) == ["interrupted"] * 2 + ["not started"] * 2
    started = [p for p in json.loads((sweep / "sweep.json").read_text())["points"]
               if (sweep / p["name"]).is_dir()]
    assert len(started) == 2 and all(meta(sweep / p["name"])["status"] == "interrupted"
                                     for p in started)
    most = max(meta(sweep / p["name"])["epochs_completed"] for p in started)
    resumed = invoke("train", "--resume", sweep, f"train.epochs={most + 1}", "-q")
    assert run_of(resumed) == sweep
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in rows] == ["completed"] * 4


def test_plot_redraws_a_sweep_and_a_sweep_is_not_taken_for_a_run(tmp_path):
    sweep = run_of(invoke("train", write_config(tmp_path), "-q", "train.epochs=2",
                          "--sweep", "optimizer.lr=0.01,0.5", "--seeds", "0-1"))
    result = invoke("plot", sweep)
    assert result.exit_code == 0, result.output
    drawn = {Path(line).relative_to(sweep).as_posix() for line in result.output.split()}
    for point in ("optimizer.lr=0.01", "optimizer.lr=0.5"):
        assert f"{point}/plots/loss.png" in drawn  # each point's seed group: mean and band
    assert any(p.startswith("plots/") and p.endswith("-vs-optimizer.lr.png") for p in drawn)

    refused = invoke("evaluate", sweep)
    assert refused.exit_code == 2 and "is a sweep (from --sweep), not a run" in refused.output
    assert str(sweep / "optimizer.lr=0.01") in refused.output

    # --out: the sweep's pictures there, and nothing inside the sweep redrawn
    kept = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    result = invoke("plot", sweep, "--out", tmp_path / "elsewhere")
    assert result.exit_code == 0, result.output
    drawn = [Path(line) for line in result.output.split()]
    assert drawn and all(p.parent == tmp_path / "elsewhere" for p in drawn), drawn
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == kept

    # an --out whose parent is a file: refused before the table is printed or anything drawn
    (tmp_path / "notes.txt").write_text("mine\n")
    for command in ("compare", "plot"):
        result = invoke(command, sweep, "--out", tmp_path / "notes.txt" / "x")
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert f"{tmp_path / 'notes.txt'} is a file, so no folder can be made there" in \
            result.output
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_a_sweep_being_trained_refuses_a_second_resume(tmp_path):
    """While the sweep trains (here: between its points), `--resume` of it or of one of
    its points from elsewhere is one line, exit 2, and changes nothing; the sweep goes on."""
    from minidl_cli import sweeps

    grid = parse_sweeps(["optimizer.lr=0.01,0.1"])
    resolved = sweeps.resolve_points(write_config(tmp_path), ["train.epochs=1"], grid, None)
    refusals = []

    def meanwhile(point, row):
        sweep = next((tmp_path / "runs").iterdir())
        files = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
        for target in (sweep, sweep / "optimizer.lr=0.1"):
            refusals.append(invoke("train", "--resume", target, "-q"))
        assert sorted(p.relative_to(sweep) for p in sweep.rglob("*")) == files

    sweep, rows = sweeps.run_sweep(grid, resolved, [0], 1, meanwhile)
    assert len(refusals) == 4
    for refused in refusals:
        assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
        assert f"{sweep} is being trained by another minidl process" in refused.output
    assert [r["status"] for r in rows] == ["completed"] * 2
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "completed"


def test_a_seed_group_being_trained_refuses_a_second_resume(tmp_path):
    from minidl_cli.config import load_config
    from minidl_cli.seeds import run_seeds

    refusals = []
    config = load_config(write_config(tmp_path), ["train.epochs=1"])
    group, rows = run_seeds(config, [0, 1], 1, lambda row: refusals.append(
        invoke("train", "--resume", next((tmp_path / "runs").iterdir()), "-q")))
    assert [r.exit_code for r in refusals] == [2, 2]
    assert f"{group} is being trained by another minidl process" in refusals[0].output
    assert [r["status"] for r in rows] == ["completed"] * 2


def test_a_failed_point_says_why_and_a_resume_repeats_it(tmp_path):
    """A point whose loss diverges is `failed` with the single run's reason (in the table,
    summary.csv and after a resume, which has nothing left to train); no nan cells."""
    config = write_config(tmp_path, model=[{"type": "linear", "out_features": 8}, "relu",
                                           {"type": "linear", "out_features": 2}])
    result = invoke("train", config, "train.epochs=2", "--sweep", "optimizer.lr=1e9,0.1")
    assert result.exit_code == 1 and "nan%" not in result.output, result.output
    assert "optimizer.lr=1e9 seed 0: failed after 0 epochs: the training loss became" in \
        result.output  # as it ends, as the single run says it
    (sweep,) = (tmp_path / "runs").iterdir()
    failed, done = csv.DictReader(open(sweep / "summary.csv"))
    assert (failed["status"], done["status"]) == ("failed", "completed")
    assert "the training loss became" in failed["reason"] and "smaller learning rate" in \
        failed["reason"] and done["reason"] == ""
    assert f"optimizer.lr=1e9 failed: {failed['reason']}" in result.output
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "completed"
    again = invoke("train", "--resume", sweep, "-q")
    assert again.exit_code == 1 and f"failed: {failed['reason']}" in again.output
    assert list(csv.DictReader(open(sweep / "summary.csv")))[0] == failed


def test_a_point_resumed_on_its_own_waits_for_its_sweep(tmp_path):
    """A point of a sweep (or a seed of a point's group) resumed by hand while the sweep is
    held by another process (its resume) is refused, naming the sweep; free, it resumes."""
    from minidl_cli.runs import collection_of, locked

    sweep = run_of(invoke("train", write_config(tmp_path), "-q", "train.epochs=1",
                          "--sweep", "optimizer.lr=0.01,0.1"))
    point = sweep / "optimizer.lr=0.01"
    with locked(sweep):
        refused = invoke("train", "--resume", point, "train.epochs=2", "-q")
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert f"{sweep} is being trained by another minidl process" in refused.output
    assert meta(point)["epochs_completed"] == 1
    assert run_of(invoke("train", "--resume", point, "train.epochs=2", "-q")) == point
    assert meta(point)["epochs_completed"] == 2
    assert collection_of(sweep / "p" / "seed-0000") == sweep == collection_of(point)
    assert collection_of(sweep) is None
