"""`minidl train --trials N`: Optuna's sampler over ranges, optimising a validation metric."""

import csv
import json
import sys

import pytest

from minidl_cli.search import parse_space
from minidl_cli.sweeps import parse_sweeps
from tests.helpers import invoke, metrics, run_of, write_config


def test_ranges_and_lists_make_the_search_space():
    space = parse_space(parse_sweeps(["optimizer.lr=log(1e-3,1)", "a.b=interval(0,0.5)",
                                      "c=int(1,4)", "d=choice(sgd,adam)", "e=8,16"]))
    assert space == {"optimizer.lr": ("log", [1e-3, 1]), "a.b": ("interval", [0, 0.5]),
                     "c": ("int", [1, 4]), "d": ("choice", ["sgd", "adam"]),
                     "e": ("choice", [8, 16])}


@pytest.mark.parametrize("spec,needle", [
    ("optimizer.lr=log(0,1)", "lo > 0"), ("optimizer.lr=interval(1,0.1)", "lo < hi"),
    ("model.0.out_features=int(1.5,4)", "two integers"), ("optimizer.lr=log(a,b)", "log(lo,hi)"),
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
