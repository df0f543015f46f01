"""nn/init.py: torch.nn.init's names and meanings, the same values after the same seed."""

from __future__ import annotations

import math

import pytest
import torch

from minidl_cli import nn
from minidl_cli.nn import init

SHAPES = [(25, 2), (2, 25), (300, 400), (6, 3, 5, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, kwargs", [
    ("xavier_uniform_", {}), ("xavier_normal_", {}), ("xavier_uniform_", {"gain": 5 / 3}),
    ("kaiming_uniform_", {}), ("kaiming_normal_", {}),
    ("kaiming_uniform_", {"a": math.sqrt(5)}), ("kaiming_normal_", {"mode": "fan_out"}),
    ("kaiming_uniform_", {"nonlinearity": "relu"}), ("uniform_", {"a": -2.0, "b": 3.0})])
def test_each_init_draws_what_torch_nn_init_draws(shape, name, kwargs):
    torch.manual_seed(0)
    ours = getattr(init, name)(torch.empty(shape, dtype=torch.float64), **kwargs)
    torch.manual_seed(0)
    theirs = getattr(torch.nn.init, name)(torch.empty(shape, dtype=torch.float64), **kwargs)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_gains_are_torchs(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(
        nonlinearity, param)


def test_conv2d_starts_with_the_weights_torch_nn_conv2d_starts_with():
    torch.manual_seed(7)
    ours = nn.Conv2d(3, 6, 5)
    torch.manual_seed(7)
    theirs = torch.nn.Conv2d(3, 6, 5)
    assert torch.equal(ours.weight.data, theirs.weight.data)
    assert torch.equal(ours.bias.data, theirs.bias.data)


def test_torch_default_is_torch_nn_linears_reset_parameters():
    """minidl's Linear defaults to xavier_uniform with a zero bias (the reference
    experiment's); torch.nn.Linear's own default is available as init.torch_default_."""
    torch.manual_seed(3)
    weight, bias = torch.empty(25, 2), torch.empty(25)
    init.torch_default_(weight, bias)
    torch.manual_seed(3)
    theirs = torch.nn.Linear(2, 25)
    assert torch.equal(weight, theirs.weight.data) and torch.equal(bias, theirs.bias.data)


@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "kaiming_uniform",
                                  "kaiming_normal"])
def test_a_linear_init_option_is_the_torch_nn_init_function_of_that_name(name):
    torch.manual_seed(1)
    layer = nn.Linear(40, 30, init=name)
    torch.manual_seed(1)
    expected = getattr(torch.nn.init, f"{name}_")(torch.empty(30, 40))
    assert torch.equal(layer.weight.data, expected)
    assert torch.equal(layer.bias.data, torch.zeros(30))


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(torch.empty(5))
