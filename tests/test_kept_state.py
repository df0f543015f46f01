"""What fit keeps between checkpoint writes: each epoch's state is kept cheaply
(copies reused from epoch to epoch) and written only at most once a second, yet last.pt
and best.pt always get the right epoch, and a NaN loss is caught at the end of its epoch."""

from __future__ import annotations

import csv

import pytest
import torch

from minidl_cli import checkpointer, experiment
from minidl_cli.config import load_config
from minidl_cli.runs import load_checkpoint
from minidl_cli.train import Diverged, Interrupted
from tests.helpers import TINY, write_config
from tests.test_interrupt_resume import StopAfter

DROPOUT = {**TINY, "model": [{"type": "linear", "out_features": 8}, "relu",
                             {"type": "dropout", "p": 0.2},
                             {"type": "linear", "out_features": 2}, "tanh"]}


@pytest.fixture
def never_due(monkeypatch):
    """No time-based write during the loop: every epoch's state is only kept."""
    monkeypatch.setattr(checkpointer, "SAVE_EVERY_S", 1e9)


def start(tmp_path, config=DROPOUT, *overrides: str):
    tmp_path.mkdir(exist_ok=True)
    return experiment.start_run(load_config(write_config(tmp_path, config), list(overrides)))


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def live(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_last_and_best_hold_their_epochs_though_later_ones_were_kept(tmp_path, never_due):
    config = (DROPOUT, "train.val_fraction=0.3", "optimizer.lr=0.5")
    run, trainer = start(tmp_path / "a", *config, "train.epochs=8")
    experiment.train_run(run, trainer, plots=False)
    with open(run.metrics_path) as f:
        val = [float(row["val_loss"]) for row in csv.DictReader(f)]
    best = val.index(min(val)) + 1
    assert best < 8, "the best epoch must come before the last for this test to bite"
    shorter, at_best = start(tmp_path / "b", *config, f"train.epochs={best}")
    experiment.train_run(shorter, at_best, plots=False)

    best_state = load_checkpoint(run.checkpoints / "best.pt")
    assert best_state["epoch"] == best and best_state["monitor"]["best"] == min(val)
    assert len(best_state["history"]) == best and same(best_state["model"], live(at_best))
    last = load_checkpoint(run.checkpoints / "last.pt")
    assert last["epoch"] == 8 and len(last["history"]) == 8
    assert same(last["model"], live(trainer)) and not same(last["model"], live(at_best))


def test_an_interrupt_after_kept_epochs_saves_the_last_completed_one(tmp_path, never_due):
    reference, straight = start(tmp_path / "a", DROPOUT, "train.epochs=3")
    experiment.train_run(reference, straight, plots=False)
    run, trainer = start(tmp_path / "b", DROPOUT, "train.epochs=6")
    with pytest.raises(Interrupted):  # 5 polls an epoch (4 batches): stops within epoch 4
        experiment.train_run(run, trainer, stop=StopAfter(17), plots=False)
    state = load_checkpoint(run.checkpoints / "last.pt")
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert same(state["model"], live(straight))
    straight_state = straight.state_dict()
    for i, kept in state["optimizer"]["state"].items():
        assert torch.equal(kept["momentum_buffer"],
                           straight_state["optimizer"]["state"][i]["momentum_buffer"])
    assert torch.equal(state["rng"]["shuffle"], straight.shuffle_gen.get_state())


def test_a_nan_in_the_middle_of_an_epoch_stops_the_run_naming_that_epoch(tmp_path, never_due,
                                                                         monkeypatch):
    run, trainer = start(tmp_path, TINY, "train.epochs=5")
    step, steps = trainer.optimizer.step, [0]

    def poisoned_step():  # the 6th step (epoch 2 of 4 batches) makes the weights NaN
        steps[0] += 1
        step()
        if steps[0] == 6:
            trainer.model.parameters()[0].data.fill_(float("nan"))

    monkeypatch.setattr(trainer.optimizer, "step", poisoned_step)
    with pytest.raises(Diverged, match="in epoch 2"):
        experiment.train_run(run, trainer, plots=False)
    state = load_checkpoint(run.checkpoints / "last.pt")
    assert state["epoch"] == 1 and run.read_meta()["epochs_completed"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    with open(run.metrics_path) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]


def test_a_snapshot_stays_as_it_was_while_training_goes_on(tmp_path):
    _, trainer = start(tmp_path, {**TINY, "optimizer": {"type": "adam", "lr": 0.1}})
    with torch.no_grad():
        trainer.train_epoch()
        trainer.history.append({"epoch": 1})
        snapshot = trainer.snapshot()
        model = {k: v.clone() for k, v in snapshot["model"].items()}
        moments = [s["exp_avg"].clone() for s in snapshot["optimizer"]["state"].values()]
        trainer.train_epoch()
        trainer.history.append({"epoch": 2})
    assert same(snapshot["model"], model) and len(snapshot["history"]) == 1
    assert all(torch.equal(s["exp_avg"], m) for s, m in
               zip(snapshot["optimizer"]["state"].values(), moments, strict=True))
    assert not same(snapshot["model"], dict(trainer.model.state_dict()))


def test_a_step_after_fit_updates_what_fit_made_in_place(tmp_path, never_due):
    """What outlives fit (the optimizer state made at its first step, batch norm's running
    statistics) is updated in place by a user's own step after fit, and loading a saved
    state copies into the live tensors."""
    config = {**TINY, "model": [{"type": "linear", "out_features": 8},
                                {"type": "batch_norm1d"}, "relu",
                                {"type": "linear", "out_features": 2}, "tanh"],
              "optimizer": {"type": "adam", "lr": 0.01}}
    run, trainer = start(tmp_path, config, "train.epochs=2")
    experiment.train_run(run, trainer, plots=False)
    saved = trainer.snapshot()
    moments = [s["exp_avg"] for s in trainer.optimizer.state.values()]
    moments_before = [m.clone() for m in moments]

    model, loss_fn, optimizer = trainer.model, trainer.loss_fn, trainer.optimizer
    part = trainer.splits["train"]
    before = live(trainer)
    with torch.no_grad():  # a user's own step after fit, outside inference mode
        model.train()
        optimizer.zero_grad()
        loss_fn(model(part.x[:50]), part.targets[:50])
        model.backward(loss_fn.backward())
        optimizer.step()
    assert not same(before, live(trainer))
    assert not any(torch.equal(m, b) for m, b in zip(moments, moments_before, strict=True))
    trainer.load_state_dict(saved)  # copies into the live tensors
    assert same(before, live(trainer))
