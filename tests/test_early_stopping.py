"""train.early_stopping: stops, records stopped_early_at, keeps best.pt, survives --resume."""

import json

import pytest

import minidl_cli
from minidl_cli.early_stopping import Monitor
from minidl_cli.runs import load_checkpoint
from tests.helpers import invoke, meta, metrics, run_of, write_config

# noisy moons, few training points, a wide network and a large step: the validation loss
# soon turns up while the training loss falls on
MOONS = {
    "name": "moons", "seed": 0,
    "data": {"type": "moons", "n_train": 60, "n_test": 100, "noise": 0.4},
    "model": [{"type": "linear", "out_features": 64}, "relu",
              {"type": "linear", "out_features": 2}],
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.05},
    "train": {"epochs": 80, "batch_size": 20, "val_fraction": 0.3,
              "early_stopping": {"monitor": "val_loss", "patience": 3}},
}


def test_monitor_counts_epochs_without_improvement():
    monitor = Monitor("val_loss", patience=2, min_delta=0.1)
    seen = [monitor.update({"epoch": e, "val_loss": v}) for e, v in
            enumerate([1.0, 0.95, 0.8, 0.75, 0.9], start=1)]
    assert seen == [True, False, True, False, False]  # 0.95: not better by more than 0.1
    assert monitor.best_epoch == 3 and monitor.should_stop
    rising = Monitor("val_accuracy", patience=1)
    assert rising.update({"epoch": 1, "val_accuracy": 0.5})
    assert not rising.update({"epoch": 2, "val_accuracy": 0.4}) and rising.should_stop


def test_stops_at_best_plus_patience_and_evaluate_uses_best(tmp_path):
    trained = invoke("train", write_config(tmp_path, MOONS), "--quiet")
    run = run_of(trained)
    info, rows = meta(run), metrics(run)
    val = [float(r["val_loss"]) for r in rows]
    best = val.index(min(val)) + 1
    assert f"stopped early at epoch {best + 3}: val_loss has not improved for 3 epochs; " \
           f"best.pt keeps epoch {best}" in trained.stderr
    assert info["stopped_early_at"] == len(rows) == best + 3 < 80
    assert info["best_epoch"] == best and info["status"] == "completed"
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == best

    evaluated = json.loads(invoke("evaluate", run, "--json").stdout)
    assert evaluated["checkpoint"].endswith("best.pt") and evaluated["epoch"] == best
    last = json.loads(invoke("evaluate", run, "--json", "--checkpoint", "last").stdout)
    assert last["epoch"] == best + 3

    # predict, load() and the final metrics of compare are those of the model kept, too
    assert minidl_cli.load(run).epoch == best and minidl_cli.load(run, "last").epoch == best + 3
    (tmp_path / "points.csv").write_text("x1,x2\n0.5,0.2\n")
    kept = invoke("predict", run, tmp_path / "points.csv").stdout
    assert kept.startswith("prediction,"), kept
    assert kept == invoke("predict", run, tmp_path / "points.csv", "--checkpoint", "best").stdout
    assert kept != invoke("predict", run, tmp_path / "points.csv", "--checkpoint", "last").stdout
    compared = json.loads(invoke("compare", run, "--json").stdout)[0]
    assert compared["epochs_mean"] == best
    assert compared["test_accuracy_mean"] == pytest.approx(float(rows[best - 1]["test_accuracy"]))

    again = invoke("train", "--resume", run, "train.epochs=200")
    assert again.exit_code == 2 and "stopped early" in again.output


def test_patience_counter_survives_resume(tmp_path):
    whole = run_of(invoke("train", write_config(tmp_path, MOONS), "--quiet"))
    stopped = meta(whole)["stopped_early_at"]
    cut = run_of(invoke("train", write_config(tmp_path, MOONS), "--quiet",
                        f"train.epochs={stopped - 1}"))
    assert "stopped_early_at" not in meta(cut)
    resumed = run_of(invoke("train", "--resume", cut, "train.epochs=80", "--quiet"))
    # without the counter in the checkpoint the resumed run would wait 3 epochs afresh
    assert meta(resumed)["stopped_early_at"] == stopped
    assert metrics(resumed)[-1]["val_loss"] == metrics(whole)[-1]["val_loss"]


@pytest.mark.parametrize("change,needle", [
    ({"val_fraction": 0.0}, "train.val_fraction=0.2"),
    ({"early_stopping": {"monitor": "test_loss"}}, "never watches the test set"),
    ({"early_stopping": {"monitor": "train_loss"}}, "keeps improving while the network overfits"),
    ({"early_stopping": {"monitor": "val_r2"}}, "val_loss"),
    ({"early_stopping": {"patience": 0}}, "patience"),
])
def test_bad_early_stopping_is_one_line(tmp_path, change, needle):
    config = {**MOONS, "train": {**MOONS["train"], **change}}
    result = invoke("train", write_config(tmp_path, config), "--quiet")
    assert result.exit_code == 2 and needle in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_a_misspelt_early_stopping_is_named_and_list_shows_its_options(tmp_path):
    train = {k: v for k, v in MOONS["train"].items() if k != "early_stopping"}
    config = {**MOONS, "train": {**train, "early_stoping": {"patience": 3}}}
    result = invoke("train", write_config(tmp_path, config), "--quiet")
    assert result.exit_code == 2, result.output
    assert "train.early_stoping: unknown option (did you mean 'early_stopping'?)" in result.output

    listed = invoke("list", "train").output
    section = listed[listed.index("early_stopping:"):]
    for option in ("monitor: str", "patience: int >= 1", "min_delta: float >= 0"):
        assert option in section, listed
