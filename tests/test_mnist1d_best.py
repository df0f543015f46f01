"""configs/mnist1d-best.yaml: its network is torch.nn's, and it learns MNIST-1D in one epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from minidl_cli.config import load_config
from minidl_cli.parts import build_parts
from tests.helpers import invoke, metrics, run_of

BEST = Path(__file__).resolve().parents[1] / "configs" / "mnist1d-best.yaml"


def test_the_best_config_computes_what_its_torch_nn_twin_computes():
    """Forward in float64 on 20 signals, training mode (batch statistics): the same logits."""
    parts = build_parts(load_config(BEST, ["train.dtype=float64"]))
    x = parts.splits["train"].x[:20]
    twin = parts.model.to_torch().train()
    assert torch.allclose(parts.model(x), twin(x), rtol=0, atol=1e-10)


def test_the_best_config_learns_mnist1d_in_one_epoch(tmp_path):
    result = invoke("train", BEST, "-q", "train.epochs=1", f"runs_dir={tmp_path}")
    assert result.exit_code == 0, result.output
    assert float(metrics(run_of(result))[-1]["test_accuracy"]) > 0.8  # chance: 0.1
