"""The task objects (classification, regression) and a regression run end to end: metrics
on the target's own scale as scikit-learn defines them, metrics.csv's columns, eval.json,
standardize_target, seed summaries and the config checks that depend on the task."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import minidl_cli
from minidl_cli import tasks
from minidl_cli.nn import CrossEntropyLoss, MSELoss
from tests.helpers import invoke, write_config

REGRESSION_COLUMNS = ["epoch", "train_loss", "train_mae", "train_rmse", "train_r2", "test_loss",
                      "test_mae", "test_rmse", "test_r2", "lr", "elapsed_s"]


def sklearn_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """mean_absolute_error, root_mean_squared_error and r2_score (multioutput
    'uniform_average') written out from scikit-learn's documentation."""
    mae = np.mean([np.mean(np.abs(y[:, j] - pred[:, j])) for j in range(y.shape[1])])
    rmse = np.mean([np.sqrt(np.mean((y[:, j] - pred[:, j]) ** 2)) for j in range(y.shape[1])])
    r2 = np.mean([1 - np.sum((y[:, j] - pred[:, j]) ** 2) / np.sum((y[:, j] - y[:, j].mean()) ** 2)
                  for j in range(y.shape[1])])
    return {"mae": mae, "rmse": rmse, "r2": r2}


# ---------------------------------------------------------------- the task objects


def test_regression_metrics_are_scikit_learns_on_the_targets_scale():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10, 100]) + 7
    task = tasks.Regression(["a", "b", "c"])
    task.fit(y)
    outputs = torch.randn(50, 3, generator=g)  # the network sees z-scored targets
    pred = (outputs.double() * task.std + task.mean).numpy()
    got = task.metrics(outputs, y)
    want = sklearn_metrics(pred, y.numpy())
    assert got == pytest.approx(want, rel=1e-12)
    assert task.targets(y, MSELoss(), torch.float64).mean(0).abs().max() < 1e-12  # z-scored
    per_target = task.evaluation(outputs, y)["per_target"]
    assert list(per_target) == ["a", "b", "c"]
    for j, name in enumerate("abc"):
        assert per_target[name] == pytest.approx(
            sklearn_metrics(pred[:, j:j + 1], y.numpy()[:, j:j + 1]), rel=1e-12)
    assert "per_target" not in tasks.Regression(["a"]).evaluation(outputs[:, :1], y[:, :1])


def test_regression_metrics_of_targets_near_1e200_are_finite_and_printed_short():
    """Targets near 1e200 (trained with standardize_target) gave rmse inf and r2 nan (the
    squares overflow float64), and evaluate printed the mae as a 200-digit number."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(40, 2, generator=g, dtype=torch.float64) + 3
    pred = y + 0.5 * torch.randn(40, 2, generator=g, dtype=torch.float64)
    small, huge = tasks.regression_scores(y, pred), tasks.regression_scores(y * 1e200, pred * 1e200)
    assert torch.isfinite(huge["rmse"]).all() and torch.isfinite(huge["r2"]).all()
    assert torch.allclose(huge["rmse"], small["rmse"] * 1e200, rtol=1e-12)
    assert torch.allclose(huge["mae"], small["mae"] * 1e200, rtol=1e-12)
    assert torch.allclose(huge["r2"], small["r2"], rtol=1e-12)
    shown = tasks.format_metric("mae", huge["mae"][0].item())
    assert len(shown) <= 11 and float(shown) == pytest.approx(huge["mae"][0].item(), rel=1e-4)
    assert tasks.format_metric("rmse", 0.25) == "0.2500"


def test_r2_of_a_constant_target_follows_scikit_learn():
    task = tasks.Regression(["y"])
    y = torch.full((4, 1), 3.0, dtype=torch.float64)
    assert task.metrics(y.clone(), y)["r2"] == 1.0  # exact: 1
    assert task.metrics(y + 1, y)["r2"] == 0.0  # not exact: 0 (force_finite)


def test_classification_evaluation_has_accuracy_error_and_confusion():
    task = tasks.Classification(3, ["cat", "dog", "emu"])
    y = torch.tensor([0, 0, 1, 2, 2])
    outputs = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 0]), 3).float()
    result = task.evaluation(outputs, y)
    assert result["accuracy"] == pytest.approx(0.6) and result["error"] == pytest.approx(0.4)
    assert result["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]  # rows true, columns predicted
    columns = task.prediction_columns(torch.tensor([[2.0, 0, 0], [0, 0, 5]]))
    assert columns["prediction"] == ["cat", "emu"]
    assert list(columns) == ["prediction", "prob_cat", "prob_dog", "prob_emu"]


def test_columns_follow_the_spec_for_each_task():
    assert tasks.Regression(["y"]).columns(["train", "test"]) == REGRESSION_COLUMNS
    assert tasks.Classification(2).columns(["train", "test", "val"]) == [
        "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "elapsed_s",
        "val_loss", "val_accuracy"]


def test_the_progress_bar_shows_the_tasks_metrics():
    row = {"train_loss": 0.5, "train_mae": 1.25, "train_rmse": 2.0, "train_r2": 0.5,
           "test_loss": 0.6, "test_mae": 1.5, "test_rmse": 2.5, "test_r2": 0.25}
    assert tasks.Regression(["y"]).progress(row) == (
        "loss 0.5000 mae 1.25 test rmse 2.5 r2 0.250")
    row = {"train_loss": 0.5, "train_accuracy": 0.75, "test_accuracy": 0.5}
    assert tasks.Classification(2).progress(row) == "loss 0.5000 acc 75.0% test 50.0%"


def test_the_task_refuses_a_loss_it_cannot_train_with():
    assert "use loss: mse, l1 or huber" in tasks.Regression(["y"]).check_loss(CrossEntropyLoss())
    assert tasks.Regression(["y"]).check_loss(MSELoss()) is None
    assert tasks.Classification(2).check_loss(CrossEntropyLoss()) is None


# ---------------------------------------------------------------- a regression run


def regression_table(folder: Path, n: int, seed: int, name: str) -> Path:
    """y = 1000 + 30 a − 20 b + noise, and a second target z = a + b (own scale ~1)."""
    rng = np.random.default_rng(seed)
    a, b = rng.random(n), rng.random(n)
    y = 1000 + 30 * a - 20 * b + rng.normal(0, 0.1, n)
    path = folder / name
    with path.open("w") as f:
        f.write("a,b,y,z\n")
        f.writelines(f"{a[i]},{b[i]},{y[i]},{a[i] + b[i]}\n" for i in range(n))
    return path


def regression_config(folder: Path, **data) -> dict:
    return {
        "name": "reg", "seed": 0,
        "data": {"type": "csv", "train": str(regression_table(folder, 80, 0, "train.csv")),
                 "test": str(regression_table(folder, 30, 1, "test.csv")),
                 "task": "regression", "label": "y", "features": ["a", "b"],
                 "standardize": True, "standardize_target": True, **data},
        "model": [{"type": "linear", "out_features": 8}, "relu",
                  {"type": "linear", "out_features": 1}],
        "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 20},
    }


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reg")
    result = invoke("train", write_config(folder, regression_config(folder)), "--quiet")
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_regression_run_writes_the_spec_columns_and_its_task(regression_run):
    with (regression_run / "metrics.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == REGRESSION_COLUMNS and len(rows) == 4
    meta = json.loads((regression_run / "meta.json").read_text())
    assert meta["task"] == "regression" and meta["targets"] == ["y"]
    assert meta["features"] == ["a", "b"] and len(meta["data_files"]) == 2


def test_evaluate_gives_mae_rmse_r2_as_computed_from_the_predictions(regression_run):
    result = invoke("evaluate", regression_run, "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["task"] == "regression"
    assert set(evaluation["test"]) == {"loss", "mae", "rmse", "r2"}
    test = np.loadtxt(regression_run.parent.parent / "test.csv", delimiter=",", skiprows=1)
    predicted = minidl_cli.load(regression_run).predict(test[:, :2])
    want = sklearn_metrics(predicted[:, None], test[:, 2:3])
    assert {k: evaluation["test"][k] for k in want} == pytest.approx(want, rel=1e-9)
    last = np.genfromtxt(regression_run / "metrics.csv", delimiter=",", names=True)[-1]
    assert evaluation["test"]["rmse"] == pytest.approx(last["test_rmse"], rel=1e-9)


def test_standardize_target_trains_on_z_scores_and_predicts_on_the_targets_scale(
        regression_run):
    state = torch.load(regression_run / "checkpoints" / "last.pt", weights_only=True)
    train = np.loadtxt(regression_run.parent.parent / "train.csv", delimiter=",", skiprows=1)
    assert state["task"]["target_mean"].item() == pytest.approx(train[:, 2].mean())
    assert state["task"]["target_std"].item() == pytest.approx(train[:, 2].std())
    predictor = minidl_cli.load(regression_run)
    x = torch.tensor(train[:5, :2])
    scaler = state["standardizer"]
    z = predictor.model(((x - scaler["mean"]) / scaler["std"]).float())
    expected = z.double()[:, 0] * train[:, 2].std() + train[:, 2].mean()
    assert predictor.predict(x) == pytest.approx(expected.numpy(), rel=1e-6)
    assert predictor.classes is None and predictor.features == ["a", "b"]


def test_several_targets_predict_one_column_each_and_seeds_summarise_regression(tmp_path):
    config = regression_config(tmp_path, label=["y", "z"], standardize_target=False)
    config["model"][-1]["out_features"] = 2
    config["train"]["epochs"] = 2
    result = invoke("train", write_config(tmp_path, config), "--seeds", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert "test_rmse" in result.stdout and "test_r2" in result.stdout
    group = Path(result.stdout.strip().splitlines()[-1])
    with (group / "summary.csv").open() as f:
        header = next(csv.reader(f))
    assert header == ["seed", "epochs", "train_loss", "train_mae", "train_rmse", "train_r2",
                      "test_loss", "test_mae", "test_rmse", "test_r2", "wall_s", "status"]
    resumed = invoke("train", "--resume", group / "seed-0000", "train.epochs=3", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    with (group / "seed-0000" / "metrics.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == REGRESSION_COLUMNS and [r[0] for r in rows[1:]] == ["1", "2", "3"]
    predicted = invoke("predict", group / "seed-0000", tmp_path / "test.csv")
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.stdout.splitlines()
    assert lines[0] == "y,z" and len(lines) == 31
    evaluated = invoke("evaluate", group / "seed-0000")
    assert evaluated.exit_code == 0, evaluated.output
    assert "test   z: mae " in evaluated.stdout
    evaluation = json.loads((group / "seed-0000" / "eval.json").read_text())
    assert set(evaluation["test"]["per_target"]) == {"y", "z"}


# ---------------------------------------------------------------- config checks


def test_config_refuses_what_the_task_cannot_use(tmp_path):
    config = regression_config(tmp_path)
    result = invoke("train", write_config(tmp_path, config, loss="cross_entropy"))
    assert result.exit_code == 2
    assert "loss: cross_entropy needs class labels" in result.output
    config["data"]["task"] = "classification"
    config["data"]["label"] = "y"
    config["data"]["train"] = str(tmp_path / "cls.csv")
    Path(config["data"]["train"]).write_text(
        "a,b,y,z\n" + "".join(f"{i},{i % 3},{'p' if i % 2 else 'q'},0\n" for i in range(20)))
    config["data"]["test"] = config["data"]["train"]
    config["model"][-1]["out_features"] = 2
    result = invoke("train", write_config(tmp_path, config))
    assert result.exit_code == 2
    assert "data.standardize_target: only regression" in result.output
    assert not (tmp_path / "runs").exists()


def test_classification_trains_with_l1_and_huber_through_their_targets(tmp_path):
    from minidl_cli.config import load_config
    from minidl_cli.nn import HuberLoss, L1Loss

    task = tasks.Classification(2)
    for loss in (L1Loss(), HuberLoss()):
        assert task.targets(torch.tensor([1, 0]), loss, torch.float32).tolist() == [[0, 1],
                                                                                   [1, 0]]
    for loss in ("l1", "huber"):
        assert load_config(write_config(tmp_path), [f"loss={loss}"])["loss"]["type"] == loss
        config = regression_config(tmp_path, standardize_target=False)
        assert load_config(write_config(tmp_path, config, loss=loss))["loss"]["type"] == loss


def test_confusion_matrix_rows_are_true_classes():
    matrix = tasks.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_r2_score():
    def r2(y_true, y_pred):
        return tasks.regression_scores(y_true, y_pred)["r2"].item()

    assert r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert r2([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0  # the mean predicts 0
    assert r2([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(1 - 1 / 2)
    assert r2([5.0, 5.0], [5.0, 5.0]) == 1.0  # constant target (force_finite)



def test_a_language_model_counts_no_padding_position():
    """Accuracy and the token count leave out the padding positions (-100) of a lines text."""
    task = tasks.LanguageModel(["\n", "a", "b"])
    outputs = torch.tensor([[[9.0, 0, 0], [0, 9.0, 0], [0, 0, 9.0]]])  # predicts 0, 1, 2
    y = torch.tensor([[-100, 1, 1]])  # padding, right, wrong
    assert task.metrics(outputs, y)["accuracy"] == 0.5 and task.count(y) == 2
