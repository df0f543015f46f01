"""Training a run end to end: what happens after the last epoch (the pictures, the warning
when the network did not learn) never turns a completed run into a failed one."""

from __future__ import annotations

import pytest

from tests.helpers import invoke, meta, run_of, write_config

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
        experiment.warn_if_not_learning(None, trainer)
    if says is None:
        assert caught == []
    else:
        (warning,) = caught
        assert says in str(warning.message) and "lower optimizer.lr (e.g. optimizer.lr=5)" in \
            str(warning.message)


def test_the_constant_guess_leaves_out_labels_that_are_no_prediction():
    """A lines-mode text with target: sequence marks its padding -100 (ignore_index): the
    commonest token's share is of the real positions (torch.bincount refuses -100)."""
    import warnings
    from types import SimpleNamespace

    import torch

    from minidl_cli import experiment

    y = torch.tensor([[-100, -100, 2, 0], [-100, 2, 2, 1], [3, 2, 0, -100]])  # 2: 4 of 8
    losses = [245.0, 3.0, 5.0, 2.0, 1.5, 1.2, 1.0, 0.8, 0.7]
    history = [{"train_loss": loss} for loss in losses] + [{"train_loss": 0.7,
                                                            "train_accuracy": 0.5}]
    trainer = SimpleNamespace(history=history, config={"optimizer": {"lr": 50}},
                              dataset=SimpleNamespace(y_train=y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        experiment.warn_if_not_learning(None, trainer)
    (warning,) = caught
    assert "no better than always predicting the most frequent class (50.0%)" in \
        str(warning.message)


def test_a_run_that_learnt_everything_at_once_is_not_told_it_did_not_learn():
    """A loss of 0 and 100% accuracy from epoch 1 on: the loss cannot fall below 0."""
    import warnings
    from types import SimpleNamespace

    import torch

    from minidl_cli import experiment

    for last in ({"train_loss": 0.0, "train_accuracy": 1.0},
                 {"train_loss": 0.0, "train_r2": 1.0},
                 {"train_loss": 1e-3, "train_accuracy": 1.0}):
        history = [dict(last) for _ in range(12)]
        trainer = SimpleNamespace(history=history, config={"optimizer": {"lr": 0.01}},
                                  dataset=SimpleNamespace(y_train=torch.tensor([0, 1])))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            experiment.warn_if_not_learning(None, trainer)
        assert caught == [], last
