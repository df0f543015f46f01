"""`minidl train --trials N`: Optuna's sampler over ranges, optimising a validation metric."""

import csv
import json
import sys

import pytest

from minidl_cli.search import parse_space
from minidl_cli.sweeps import parse_sweeps
from tests.helpers import invoke, meta, metrics, run_of, write_config


def test_ranges_and_lists_make_the_search_space():
    space = parse_space(parse_sweeps(["optimizer.lr=log(1e-3,1)", "a.b=interval(0,0.5)",
                                      "c=int(1,4)", "d=choice(sgd,adam)", "e=8,16"]))
    assert space == {"optimizer.lr": ("log", [1e-3, 1]), "a.b": ("interval", [0, 0.5]),
                     "c": ("int", [1, 4]), "d": ("choice", ["sgd", "adam"]),
                     "e": ("choice", [8, 16])}


@pytest.mark.parametrize("spec,needle", [
    ("optimizer.lr=log(0,1)", "lo > 0"), ("optimizer.lr=interval(1,0.1)", "lo < hi"),
    ("model.0.out_features=int(1.5,4)", "two integers"), ("optimizer.lr=log(a,b)", "log(lo,hi)"),
    ("model.0.out_features=choice(4,8,4)", "4 repeats 4 (the same value)"),
])
def test_bad_ranges_are_one_line(tmp_path, spec, needle):
    result = invoke("train", write_config(tmp_path), "train.val_fraction=0.2", "--trials", "2",
                    "--sweep", spec)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,needle", [
    (["--sweep", "optimizer.lr=log(0.001,1)"], "--trials N"),  # a range needs --trials
    (["--trials", "2"], "--sweep"),
    (["--trials", "2", "--sweep", "optimizer.lr=log(0.001,1)"], "train.val_fraction=0.2"),
])
def test_search_usage_errors(tmp_path, args, needle):
    result = invoke("train", write_config(tmp_path), *args)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_without_optuna_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    result = invoke("train", write_config(tmp_path), "train.val_fraction=0.2", "--trials", "2",
                    "--sweep", "optimizer.lr=log(0.001,1)")
    assert result.exit_code == 2 and "pip install 'minidl[sweep]'" in result.output
    assert not (tmp_path / "runs").exists()


def test_trials_draw_in_range_and_report_the_validation_loss(tmp_path):
    result = invoke("train", write_config(tmp_path), "-q", "train.val_fraction=0.25",
                    "train.epochs=2", "--trials", "3", "--sweep", "optimizer.lr=log(0.001,0.5)",
                    "--sweep", "model.0.out_features=choice(4,8)")
    sweep = run_of(result)
    info = json.loads((sweep / "sweep.json").read_text())
    assert info["search"]["objective"] == "val_loss" and len(info["points"]) == 3
    lrs = [p["values"]["optimizer.lr"] for p in info["points"]]
    assert all(0.001 <= lr <= 0.5 for lr in lrs) and len(set(lrs)) == 3
    assert all(p["values"]["model.0.out_features"] in (4, 8) for p in info["points"])
    for row, point in zip(csv.DictReader(open(sweep / "summary.csv")), info["points"],
                          strict=True):
        last = metrics(sweep / point["name"])[-1]
        assert float(row["val_loss_mean"]) == pytest.approx(float(last["val_loss"]))
        assert float(row["val_loss_mean"]) != pytest.approx(float(last["test_loss"]))
        assert f"lr: {point['values']['optimizer.lr']}" in (
            sweep / point["name"] / "config.yaml").read_text()
    assert "best by val_loss" in result.stdout


@pytest.mark.parametrize("specs,needle", [
    (["optimzer.lr=interval(1,2)"], "optimzer: unknown top-level key"),
    (["optimizer.lr=interval(-1,-0.5)"], "optimizer.lr=-1"),
    (["optimizer.lr=interval(-1,1)"], "optimizer.lr=-1"),  # partly outside: refused too
    (["model.0.out_features=int(-5,0)"], "model.0.out_features=-5"),
    (["model.0.out_features=int(0,3)"], "model.0.out_features=0"),
    (["model.0.out_features=choice(4,8)", "optimzer.lr=log(0.01,0.1)"], "--sweep optimzer.lr="),
    (["optimizer.type=choice(sgd,adam)", "optimizer.momentum=interval(0,0.9)"],
     "with optimizer.type=adam (and any value of the other swept keys) the config is not "
     "valid: optimizer.momentum: unknown option"),
])
def test_a_space_no_trial_could_use_is_refused_before_anything_is_made(tmp_path, specs, needle):
    """Each end of a range and each choice is checked as a grid point is: a spec that
    cannot work is one line quoting what was typed, exit 2, and no sweep directory."""
    sweep_args = [a for spec in specs for a in ("--sweep", spec)]
    result = invoke("train", write_config(tmp_path), "train.val_fraction=0.2", "--trials", "3",
                    *sweep_args)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert any(f"--sweep {spec}:" in result.output for spec in specs)  # as it was typed
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_draw_no_config_allows_fails_its_trial_and_the_search_goes_on(tmp_path):
    """Group counts 1 and 8 both divide 8 channels, most between do not: such a draw is
    a failed trial (its reason in summary.csv), the others train, and the search ends
    completed with all its trials."""
    config = write_config(tmp_path, model=[{"type": "linear", "out_features": 8},
                                           {"type": "group_norm", "num_groups": 1}, "relu",
                                           {"type": "linear", "out_features": 2}, "tanh"])
    result = invoke("train", config, "-q", "train.val_fraction=0.25", "train.epochs=1",
                    "--trials", "5", "--sweep", "model.1.num_groups=int(1,8)")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (sweep,) = (tmp_path / "runs").iterdir()
    info = json.loads((sweep / "sweep.json").read_text())
    assert info["status"] == "completed" and len(info["points"]) == 5
    rows = {r["point"]: r for r in csv.DictReader(open(sweep / "summary.csv"))}
    groups = [p["values"]["model.1.num_groups"] for p in info["points"]]
    assert any(8 % g for g in groups) and any(8 % g == 0 for g in groups)
    for point, g in zip(info["points"], groups, strict=True):
        row = rows[point["name"]]
        if 8 % g:
            assert row["status"] == "failed" and "must divide the 8 channels" in row["reason"]
            assert not (sweep / point["name"]).exists()
        else:
            assert row["status"] == "completed" and meta(sweep / point["name"])["status"] == \
                "completed"
    assert "failed" in result.output and "must divide" in result.output


def test_an_interrupted_search_is_not_completed_and_resume_draws_the_rest(tmp_path):
    """Stopped after its first trial (as by Ctrl-C's flag), a 3-trial search is
    interrupted with one point; --resume trains the two missing trials (new draws, the
    study rebuilt from the finished one) and only then is it completed."""
    from minidl_cli import search
    from minidl_cli.train import StopFlag

    flag = StopFlag()
    sweep, rows = search.run_search(
        write_config(tmp_path), ["train.val_fraction=0.25", "train.epochs=1"],
        parse_sweeps(["optimizer.lr=log(0.001,0.5)"]), 3, None, 1,
        lambda point, row: setattr(flag, "signum", 2), flag)
    info = json.loads((sweep / "sweep.json").read_text())
    assert info["status"] == "interrupted" and len(info["points"]) == len(rows) == 1
    assert rows[0]["status"] == "completed"

    result = invoke("train", "--resume", sweep, "-q", "train.epochs=2")
    assert run_of(result) == sweep
    info = json.loads((sweep / "sweep.json").read_text())
    assert info["status"] == "completed" and [p["trial"] for p in info["points"]] == [0, 1, 2]
    lrs = [p["values"]["optimizer.lr"] for p in info["points"]]
    assert len(set(lrs)) == 3 and all(0.001 <= lr <= 0.5 for lr in lrs)
    for point in info["points"]:  # the first extended, the new ones with the resume's epochs
        assert meta(sweep / point["name"])["epochs_completed"] == 2
    summary = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in summary] == ["completed"] * 3
