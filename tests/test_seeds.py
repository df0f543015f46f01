"""`minidl train --seeds`: a group of runs, its summary, and group-level evaluate/plot."""

import csv
import json
from pathlib import Path

import pytest

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
