"""A convnet with batch norm resumes bit for bit from a checkpoint (buffers included) and
its checkpoint loads into torch.nn."""

from __future__ import annotations

import io

import torch

from minidl_cli.config import load_config
from minidl_cli.train import Trainer
from tests.helpers import write_config

CNN = {
    "seed": 0,
    "data": {"type": "digits", "standardize": True},
    "model": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
              "batch_norm2d", "relu", {"type": "max_pool2d", "kernel_size": 2}, "flatten",
              {"type": "linear", "out_features": 16}, "batch_norm1d", "relu",
              {"type": "linear", "out_features": 10}],
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"epochs": 3, "batch_size": 128},
}


def test_a_batch_norm_convnet_resumes_bit_for_bit_from_a_checkpoint(tmp_path):
    config = load_config(write_config(tmp_path, CNN))
    straight = Trainer(config)
    straight.fit(3)
    first = Trainer(config)
    first.fit(2)
    saved = io.BytesIO()
    torch.save(first.snapshot(), saved)  # as checkpoints are written and read
    saved.seek(0)
    resumed = Trainer(config)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    resumed.fit(3)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert "1.running_var" in a and a["6.num_batches_tracked"].dtype == torch.int64
    assert a["1.num_batches_tracked"].item() == 3 * 11  # 1347 training images, batches of 128
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history[-1]["test_loss"] == resumed.history[-1]["test_loss"]


def test_to_torch_maps_every_new_layer_bilinear_included(tmp_path):
    from minidl_cli.predict import Predictor
    from tests.helpers import TINY

    model = [{"type": "linear", "out_features": 6}, "layer_norm", "batch_norm1d",
             {"type": "bilinear", "out_features": 2}]
    config = load_config(write_config(tmp_path, {**TINY, "model": model,
                                                 "loss": "cross_entropy"}))
    trainer = Trainer(config)
    trainer.fit(1)
    predictor = Predictor(trainer.snapshot(), tmp_path / "last.pt", tmp_path)
    torch_net = predictor.to_torch()
    x = torch.rand(7, 2, dtype=predictor.dtype)
    with torch.no_grad():
        torch.testing.assert_close(torch_net(x), predictor.model(x))
    assert isinstance(torch_net[3], torch.nn.Bilinear)
    assert torch_net[2].num_batches_tracked.item() == 4  # 200 points, batches of 50
