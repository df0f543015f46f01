"""Blocks (residual, concat, repeat): nested layer lists in configs, torch.nn's state-dict
keys, torch.nn twins, gradients summed where a tensor fans out, and runs end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import minidl_cli
from minidl_cli import nn
from minidl_cli.build import build_model
from minidl_cli.config import ConfigError, dump_yaml, load_config, load_yaml, resolve
from minidl_cli.gradcheck import check_module
from minidl_cli.registry import Layers, register
from tests.helpers import invoke, write_config

LIN = {"type": "linear", "out_features": 8}
BLOCKS = [  # keys as torch.nn nests them: 3.body.1.weight, 3.shortcut.0.weight, 4.0.1.weight
    LIN, "relu", "identity",
    {"type": "residual", "body": ["relu", LIN], "shortcut": [LIN]},
    {"type": "repeat", "times": 2, "body": ["tanh", LIN]},
    {"type": "concat", "branches": [["relu", "tanh", {"type": "linear", "out_features": 3}],
                                    [{"type": "residual", "body": ["elu"]}]]},
    {"type": "linear", "out_features": 2},
]


def test_state_dict_keys_nest_as_torch_nn_and_the_twin_loads_them():
    torch.manual_seed(0)
    net = build_model(BLOCKS, (5,)).to(torch.float64)
    keys = list(net.state_dict())
    for key in ("3.body.1.weight", "3.shortcut.0.weight", "4.0.1.weight", "4.1.1.bias",
                "5.branches.0.2.weight"):
        assert key in keys
    assert len(net.parameters()) == 14
    twin = net.to_torch()
    assert list(twin.state_dict()) == keys
    assert isinstance(twin[3], torch.nn.Module) and isinstance(twin[4], torch.nn.Sequential)
    x = torch.randn(6, 5, dtype=torch.float64)
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=1e-12)
    # lists print as a ModuleList; a repeat is a Sequential of its copies
    assert repr(net).replace("Repeat", "Sequential") == repr(twin).replace("Torch", "")
    twin.load_state_dict({k: torch.full_like(v, 0.5) for k, v in twin.state_dict().items()})
    net.load_state_dict(twin.state_dict())
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=1e-12)


def test_repeat_copies_have_their_own_parameters_drawn_in_order():
    torch.manual_seed(0)
    net = build_model([{"type": "repeat", "times": 3, "body": [LIN, "relu"]}], (8,))
    torch.manual_seed(0)
    by_hand = [nn.Linear(8, 8) for _ in range(3)]  # the RNG consumed as by hand, copy by copy
    weights = [net[0][k][0].weight for k in range(3)]
    assert len({id(w) for w in weights}) == 3
    for w, hand in zip(weights, by_hand, strict=True):
        assert torch.equal(w.data, hand.weight.data)
    assert not torch.equal(weights[0].data, weights[1].data)


class ForgetsTheShortcut(nn.Residual):
    def backward(self, grad_output):
        return self.body.backward(grad_output)  # wrong: x also reaches y through the shortcut


class OneBranch(nn.Concat):
    def backward(self, grad_output):
        return self.branches[0].backward(grad_output.split(self._sizes, self.dim)[0])


@pytest.mark.parametrize("broken", [
    lambda: ForgetsTheShortcut([nn.Linear(4, 4), nn.Tanh()]),
    lambda: OneBranch([[nn.Linear(4, 3)], [nn.Tanh()]]),
])
def test_the_oracle_catches_a_block_that_does_not_sum_its_fan_out(broken):
    report = check_module(broken().to(torch.float64), torch.randn(5, 4, dtype=torch.float64))
    assert report.errors["output"] < 1e-12 and report.errors["input"] > 1e-3


def test_python_api_takes_modules_lists_and_a_copy_maker():
    block = nn.Residual([nn.Linear(3, 3), nn.ReLU()])
    assert isinstance(block.body, nn.Sequential) and block.shortcut is None
    assert block.output_shape((3,)) == (3,)
    stack = nn.Repeat(2, lambda: nn.Residual([nn.Linear(3, 3)]))
    assert [n for n, _ in stack.named_parameters()] == [
        "0.body.0.weight", "0.body.0.bias", "1.body.0.weight", "1.body.0.bias"]
    with pytest.raises(TypeError, match="body must be a function making one copy"):
        nn.Repeat(2, nn.Linear(3, 3))  # one module: its parameters would be shared
    joined = nn.Concat([[nn.Linear(3, 2)], [nn.Identity()]])
    assert joined.output_shape((3,)) == (5,) and joined(torch.randn(4, 3)).shape == (4, 5)
    with pytest.raises(ValueError, match=r"adds its body's output \(N, 2\) to its input"):
        nn.Residual([nn.Linear(3, 2)]).output_shape((3,))


BASE = {"seed": 0, "data": {"type": "digits"}, "loss": "cross_entropy",
        "optimizer": {"type": "adam", "lr": 0.01}}


def config_problems(model) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve({**BASE, "model": model})
    return info.value.problems


@pytest.mark.parametrize(("model", "message"), [
    (["flatten", {"type": "residual", "body": [LIN, {"type": "linear", "out_features": 0}]}],
     "model[1].body[1].out_features: must be an integer >= 1, got 0"),
    (["flatten", {"type": "residual", "body": [{"type": "rlu"}]}],
     "model[1].body[0].type: unknown layer 'rlu' (did you mean 'relu'?)"),
    (["flatten", {"type": "concat", "branches": [["relu"], [{**LIN, "out_feature": 3}]]}],
     "model[1].branches[1][0].out_feature: unknown option (did you mean 'out_features'?)"),
    (["flatten", {"type": "repeat", "times": 2, "body": [
        {"type": "residual", "body": [{"type": "conv2d", "out_channels": 2}]}]}],
     "model[1].body[0].body[0].kernel_size: required option missing"),
    (["flatten", {"type": "residual"}], "model[1].body: required option missing (a list of "
                                        "layers such as [{type: linear, out_features: 8}, relu])"),
    (["flatten", {"type": "residual", "body": []}],
     "model[1].body: must be a non-empty list of layers"),
    (["flatten", {"type": "residual", "body": [{**LIN, "in_features": 3}]}],
     "model[1].body[0].in_features: is 3 but the input of model[1].body has 64 features; "
     "remove it (it is inferred) or set it to 64"),
    (["flatten", {"type": "residual", "body": [LIN]}, {"type": "linear", "out_features": 10}],
     "model[1]: residual adds its body's output (N, 8) to its input (no shortcut: the "
     "identity) (N, 64), and the shapes differ; set shortcut: [{type: linear, "
     "out_features: 8}]"),
    ([{"type": "residual", "body": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                     "stride": 2, "padding": 1}]}, "flatten", LIN],
     "model[0]: residual adds its body's output (N, 4, 4, 4) to its input (no shortcut: the "
     "identity) (N, 1, 8, 8), and the shapes differ; set shortcut: [{type: conv2d, "
     "out_channels: 4, kernel_size: 1, stride: 2}]"),
    (["flatten", {"type": "unflatten", "unflattened_size": [4, 16]},
      {"type": "residual", "body": [{"type": "conv1d", "out_channels": 6, "kernel_size": 3,
                                     "padding": 1, "stride": 2}]}],
     "model[2]: residual adds its body's output (N, 6, 8) to its input (no shortcut: the "
     "identity) (N, 4, 16), and the shapes differ; set shortcut: [{type: conv1d, "
     "out_channels: 6, kernel_size: 1, stride: 2}]"),
    (["flatten", {"type": "unflatten", "unflattened_size": [4, 16]},
      {"type": "residual", "body": [LIN]}],  # a sequence (T, F): the linear acts on F
     "model[2]: residual adds its body's output (N, 4, 8) to its input (no shortcut: the "
     "identity) (N, 4, 16), and the shapes differ; set shortcut: [{type: linear, "
     "out_features: 8}]"),
    (["flatten", {"type": "repeat", "times": 2, "body": [LIN]}],
     "model[1]: repeat needs a body that keeps its input's shape"),
    (["flatten", {"type": "concat", "branches": [["relu"], [{"type": "lstm_cell"}]]}],
     "model[1].branches[1][0].type: unknown layer 'lstm_cell'"),
    (["flatten", {"type": "concat", "dim": 2, "branches": [["relu"], [LIN]]}],
     "model[1]: concat has dim=2, but its branches output (N, 64)"),
])
def test_a_misconfigured_block_names_the_nested_path(model, message):
    found = config_problems(model)
    assert any(p.startswith(message) for p in found), found


def test_a_batch_norm_inside_a_block_is_checked_against_a_last_batch_of_one():
    model = [LIN, {"type": "repeat", "times": 2, "body": [
        {"type": "residual", "body": ["batch_norm1d"]}]}, {"type": "linear", "out_features": 2}]
    with pytest.raises(ConfigError) as info:
        resolve({**BASE, "data": {"type": "disk", "n_train": 101}, "model": model,
                 "train": {"batch_size": 10}})
    assert info.value.problems == [
        "train.batch_size: 10 leaves a last batch of 1 of the 101 training points, and "
        "model[1].body[0].body[0] (batch norm) needs two or more in training; use another "
        "batch size, e.g. 11"]


def test_inferred_sizes_are_recorded_at_every_depth_and_round_trip(tmp_path):
    model = ["flatten", {"type": "linear", "out_features": 16},
             {"type": "repeat", "times": 2, "body": [{"type": "residual", "body": [
                 {"type": "linear", "out_features": 16}, "layer_norm"]}]},
             {"type": "concat", "branches": [[{"type": "linear", "out_features": 4}],
                                             ["identity"]]},
             {"type": "linear", "out_features": 10}]
    config = resolve({**BASE, "model": model})
    inner = config["model"][2]["body"][0]["body"]
    assert inner[0]["in_features"] == 16 and inner[1]["normalized_shape"] == 16
    assert config["model"][3]["branches"][0][0]["in_features"] == 16
    assert config["model"][4]["in_features"] == 20  # 4 + 16 side by side
    assert config["model"][3]["dim"] == 1 and config["model"][2]["body"][0]["shortcut"] is None
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config))
    assert resolve(load_yaml(path)) == config


def test_overrides_reach_into_nested_lists(tmp_path):
    path = write_config(tmp_path, {**BASE, "model": ["flatten", *BLOCKS[:4], {
        "type": "linear", "out_features": 10}]})
    config = load_config(path, ["model.4.body.1.out_features=8", "model.4.body.0=tanh"])
    assert config["model"][4]["body"] == [{"type": "tanh"}, {
        "type": "linear", "in_features": 8, "out_features": 8, "bias": True,
        "init": "xavier_uniform"}]
    with pytest.raises(ConfigError, match=r"model\[4\]\.body\[1\]\.out_features: must be an "
                                          r"integer >= 1, got 0"):
        load_config(path, ["model.4.body.1.out_features=0"])
    with pytest.raises(ConfigError, match=r"model\[4\]\.body\[0\]\.negative_slop: unknown "
                                          r"option \(did you mean 'negative_slope'\?\)"):
        load_config(path, ["model.4.body.0=leaky_relu", "model.4.body.0.negative_slop=0.1"])


def test_list_shows_the_blocks_and_their_layer_options():
    text = invoke("list", "layers").stdout
    residual = text[text.index("\n  residual"):]
    assert "body: layers (required)" in residual and "shortcut: layers | null" in residual
    assert "branches: list[layers] (required)" in text and "times: int >= 1" in text


RESMLP = Path(__file__).parent.parent / "configs" / "digits-resmlp.yaml"
RESCNN = Path(__file__).parent.parent / "configs" / "digits-rescnn.yaml"


def tiny_version(path: Path) -> dict:
    """A shipped config at a fraction of its size: narrower layers, two epochs."""
    config = yaml.safe_load(path.read_text())
    text = json.dumps(config["model"])
    for wide, narrow in ((128, 12), (32, 6), (16, 4)):
        text = text.replace(f": {wide}", f": {narrow}")
    config["model"] = json.loads(text)
    config["train"] = {**config["train"], "epochs": 2, "batch_size": 64}
    config["optimizer"]["lr"] = 0.01  # few steps: a larger one
    return config


@pytest.mark.parametrize("shipped", [RESMLP, RESCNN], ids=["resmlp", "rescnn"])
def test_residual_networks_train_evaluate_predict_resume_and_go_to_torch(tmp_path, shipped):
    config = write_config(tmp_path, tiny_version(shipped), name="res.yaml")
    straight = invoke("train", config, "-q")
    assert straight.exit_code == 0, straight.output
    straight = Path(straight.stdout.strip().splitlines()[-1])
    short = invoke("train", config, "-q", "train.epochs=1")
    run = Path(short.stdout.strip().splitlines()[-1])
    resumed = invoke("train", "--resume", run, "-q", "train.epochs=2")
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any(".body." in key for key in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    evaluated = invoke("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = json.loads(evaluated.stdout)["test"]["accuracy"]
    with open(run / "metrics.csv") as f:
        assert accuracy == float(list(csv.DictReader(f))[-1]["test_accuracy"])
    assert accuracy > 0.3  # it learns: ten classes, chance is 0.1
    predictor = minidl_cli.load(run)
    x = torch.randn(20, 1, 8, 8, dtype=predictor.dtype)
    np.savez(tmp_path / "new.npz", x=x.squeeze(1).numpy())
    predicted = invoke("predict", run, tmp_path / "new.npz")
    assert predicted.exit_code == 0, predicted.output
    rows = predicted.stdout.strip().splitlines()
    assert len(rows) == 21 and rows[0].startswith("prediction")
    twin = predictor.to_torch()
    assert list(twin.state_dict()) == list(predictor.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(x), predictor.model(x))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    nested = list(_nested_layers(saved["model"]))
    assert nested and all(layer.get(key) for layer in nested  # inferred sizes recorded
                          for key in ("in_features", "in_channels", "num_features")
                          if key in layer)
    assert any("in_features" in layer or "in_channels" in layer for layer in nested)


def _nested_layers(layers):
    """The layer configs inside blocks (depth >= 1), at every depth."""
    for layer in layers:
        for value in layer.values():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                yield from value
                yield from _nested_layers(value)


def test_a_plugin_block_gets_its_layer_lists_validated_sized_and_built():
    """Nesting is a type, not a list of built-in blocks: a plugin's option annotated Layers
    is a nested model like residual's body."""
    @register("layer", "test_blocks_gated")
    class Gated(nn.Module):
        """y = x ⊙ σ(gate(x)): the gate's layers are a nested model."""

        def __init__(self, gate: Layers):
            self.gate = gate

        def forward(self, x):
            self._x, self._s = x, torch.sigmoid(self.gate.forward(x))
            return x * self._s

        def backward(self, grad_output):
            s = self._s  # x fans out to the product and the gate: their gradients add
            return grad_output * s + self.gate.backward(grad_output * self._x * s * (1 - s))

    model = [LIN, {"type": "test_blocks_gated", "gate": [LIN]}, {"type": "linear",
                                                                 "out_features": 2}]
    config = resolve({**BASE, "data": {"type": "disk"}, "model": model})
    assert config["model"][1]["gate"][0]["in_features"] == 8
    net = build_model(config["model"], (2,))
    assert "1.gate.0.weight" in net.state_dict()
    report = check_module(net[1].to(torch.float64), torch.randn(4, 8, dtype=torch.float64))
    assert report.passed() and "gate.0.weight" in report.errors
    bad = [LIN, {"type": "test_blocks_gated", "gate": [{"type": "linear", "out_features": -1}]}]
    assert config_problems(bad) == [
        "model[1].gate[0].out_features: must be an integer >= 1, got -1"]


@pytest.mark.parametrize("block", [
    lambda: nn.Concat([[nn.Embedding(7, 4)], [nn.Embedding(7, 3)]], dim=2),
    lambda: nn.Residual([nn.Embedding(7, 4)], shortcut=[nn.Embedding(7, 4)]),
    lambda: nn.Residual([nn.Embedding(7, 4), nn.Tanh()], shortcut=[nn.Embedding(7, 4)]),
])
def test_a_block_on_token_ids_trains_its_embeddings_and_returns_no_gradient(block):
    """Token ids that fan out to several embeddings have no gradient to add up: the block's
    backward returns None, and every embedding's weight gradient is autograd's."""
    module = block().to(torch.float64)
    ids = torch.randint(0, 7, (5, 3), generator=torch.Generator().manual_seed(0))
    report = check_module(module, ids)
    assert "input" not in report.errors and report.passed()
    assert {name for name in report.errors if name.endswith("weight")} == {
        name for name, _ in module.named_parameters()}


def test_a_concat_of_embeddings_trains_on_text(tmp_path):
    (tmp_path / "names.txt").write_text("emma\nava\nnora\nmona\nrosa\nanna\nsara\neva\n" * 3)
    config = {"name": "embcat", "seed": 0,
              "data": {"type": "text", "path": "names.txt", "mode": "lines", "block_size": 3,
                       "target": "next", "test_fraction": 0.2},
              "model": [{"type": "concat", "dim": 2,
                         "branches": [[{"type": "embedding", "embedding_dim": 4}],
                                      [{"type": "embedding", "embedding_dim": 2}]]},
                        {"type": "gru", "hidden_size": 4, "output": "last"},
                        {"type": "linear", "out_features": 9}],
              "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.02},
              "train": {"epochs": 2, "batch_size": 8}}
    path = write_config(tmp_path, config)
    result = invoke("train", str(path), "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("gradcheck", str(path))
    assert result.exit_code == 0 and "gradcheck passed" in result.output, result.output


@pytest.mark.parametrize("layers", [
    lambda: [nn.Flatten(), nn.Embedding(7, 4), nn.Flatten()],
    lambda: [nn.Unflatten([3, 1]), nn.Embedding(7, 4), nn.Flatten()],
    lambda: [nn.Identity(), nn.Concat([[nn.Embedding(7, 4)], [nn.Flatten(), nn.Embedding(7, 2)]],
                                      dim=2)],
])
def test_layers_that_only_reshape_token_ids_before_an_embedding_get_no_gradient(layers):
    """The embedding returns no input gradient: the Sequential stops there (it passed None to
    the flatten before it, an AttributeError at the first step), and the table's gradient is
    autograd's."""
    module = nn.Sequential(*layers()).to(torch.float64)
    ids = torch.randint(0, 7, (5, 3), generator=torch.Generator().manual_seed(0))
    report = check_module(module, ids)
    assert "input" not in report.errors and report.passed()
    module.zero_grad()
    module.forward(ids)
    module.backward_params(torch.ones(module.forward(ids).shape, dtype=torch.float64))
    assert all(p.grad.abs().sum() > 0 for p in module.parameters())


NAMES_TEXT = "emma\nava\nnora\nmona\nrosa\nanna\nsara\neva\n" * 3
EMB = {"type": "embedding", "embedding_dim": 4}


@pytest.mark.parametrize("first", [
    ["flatten", EMB, "flatten"],
    [{"type": "unflatten", "unflattened_size": [3, 1]}, EMB, "flatten"],
    ["flatten", {"type": "concat", "dim": 2, "branches": [[EMB], [EMB]]}, "flatten"],
])
def test_a_language_model_may_reshape_its_token_ids_before_the_embedding(tmp_path, first):
    (tmp_path / "names.txt").write_text(NAMES_TEXT)
    config = {"name": "idsfirst", "seed": 0,
              "data": {"type": "text", "path": "names.txt", "mode": "lines", "block_size": 3,
                       "target": "next", "test_fraction": 0.2},
              "model": [*first, {"type": "linear", "out_features": 9}],
              "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.02},
              "train": {"epochs": 2, "batch_size": 8}}
    result = invoke("train", str(write_config(tmp_path, config)), "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("gradcheck", str(write_config(tmp_path, config)))
    assert result.exit_code == 0 and "gradcheck passed" in result.output, result.output


def test_a_layer_passing_token_ids_on_is_checked_by_its_output_alone():
    """A flatten of token ids outputs ids: no gradient exists, so gradcheck compares its
    output with torch.nn.Flatten's (it drew a random int64 gradient, a NotImplementedError)."""
    ids = torch.randint(0, 7, (5, 3, 2), generator=torch.Generator().manual_seed(0))
    report = check_module(nn.Flatten(), ids)
    assert report.errors == {"output": 0.0} and report.passed()
