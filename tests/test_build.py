"""Building components from resolved config sections: weights, widths, options, errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from minidl_cli import nn, optim
from minidl_cli.build import (
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    infer_shapes,
)
from minidl_cli.config import resolve

MODEL = [
    {"type": "linear", "out_features": 5},
    "relu",
    {"type": "dropout", "p": 0.5},
    {"type": "Linear", "out_features": 4, "init": "kaiming_normal"},
    {"type": "tanh"},
    {"type": "linear", "out_features": 3, "bias": False},
]


def weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_same_seed_same_weights_different_seed_different():
    torch.manual_seed(3)
    a = weights(build_model(MODEL, 2))
    torch.manual_seed(3)
    b = weights(build_model(MODEL, 2))
    torch.manual_seed(4)
    c = weights(build_model(MODEL, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_building_draws_from_the_global_rng_like_constructing_by_hand():
    torch.manual_seed(0)
    built = build_model(MODEL, 2)
    after_build = torch.rand(3)
    torch.manual_seed(0)
    by_hand = nn.Sequential(
        nn.Linear(2, 5),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(5, 4, init="kaiming_normal"),
        nn.Tanh(),
        nn.Linear(4, 3, bias=False),
    )
    assert torch.equal(after_build, torch.rand(3))  # the same number of draws
    assert all(torch.equal(v, by_hand.state_dict()[k]) for k, v in built.state_dict().items())


def test_resolving_and_inferring_leave_the_rng_alone():
    raw = yaml.safe_load(
        "seed: 1\ndata: {type: disk, n_train: 20, n_test: 10}\n"
        "model: [{type: linear, out_features: 6}, relu, {type: linear, out_features: 2}]\n"
        "loss: mse\noptimizer: {type: sgd, lr: 0.1}\ntrain: {batch_size: 5}\n"
    )
    torch.manual_seed(1)
    first = weights(build_model(raw["model"], 2))
    torch.manual_seed(1)
    config = resolve(raw)
    assert infer_shapes(config["model"], (2,)) == [(2,), (6,), (6,), (2,)]
    second = weights(build_model(config["model"], 2))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_in_features_are_inferred_and_state_dict_keys_follow_torch():
    net = build_model(MODEL, 7)
    assert infer_shapes(MODEL, (7,)) == [(7,), (5,), (5,), (5,), (4,), (4,), (3,)]
    assert [
        (layer.in_features, layer.out_features) for layer in net if hasattr(layer, "weight")
    ] == [
        (7, 5),
        (5, 4),
        (4, 3),
    ]
    assert list(net.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight"]
    assert net.state_dict()["3.weight"].shape == (4, 5)
    assert net.training and all(layer.training for layer in net)  # left in train mode
    assert net(torch.zeros(9, 7)).shape == (9, 3)


def test_model_errors_name_the_layer():
    with pytest.raises(
        ValueError, match=r"^model\[2\]\.in_features: is 4 but model\[1\] outputs 5"
    ):
        build_model(
            [
                {"type": "linear", "out_features": 5},
                "relu",
                {"type": "linear", "in_features": 4, "out_features": 2},
            ],
            3,
        )
    with pytest.raises(ValueError, match=r"^model\[1\]: dropout probability p must be between"):
        build_model([{"type": "linear", "out_features": 5}, {"type": "dropout", "p": 2.0}], 3)
    with pytest.raises(ValueError, match=r"^model\[0\]: .*unexpected keyword argument 'size'"):
        build_model([{"type": "linear", "size": 5}], 3)
    with pytest.raises(ValueError, match=r"^unknown layer 'rlu' \(did you mean 'relu'\?\)"):
        build_model(["rlu"], 3)


def test_loss_optimizer_and_scheduler_take_their_options():
    loss = build_loss({"type": "MSELoss", "reduction": "sum", "targets": "signed"})
    assert isinstance(loss, nn.MSELoss) and loss.reduction == "sum" and loss.encoding == "signed"
    assert isinstance(build_loss("cross_entropy"), nn.CrossEntropyLoss)

    params = build_model(MODEL, 2).parameters()
    adam = build_optimizer({"type": "adam", "lr": 0.01, "betas": [0.8, 0.9]}, params)
    assert isinstance(adam, optim.Adam) and adam.params == params
    assert adam.param_groups[0]["lr"] == 0.01 and adam.param_groups[0]["betas"] == (0.8, 0.9)
    sgd = build_optimizer({"type": "SGD", "lr": 0.5, "momentum": 0.9}, iter(params))
    assert isinstance(sgd, optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9

    assert build_scheduler(None, sgd) is None
    step = build_scheduler({"type": "step", "step_size": 2, "gamma": 0.5}, sgd)
    assert isinstance(step, optim.StepLR)
    for _ in range(4):
        step.step()
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.125)
    cosine = build_scheduler({"type": "cosine", "T_max": 10, "eta_min": 0.0}, adam)
    assert isinstance(cosine, optim.CosineAnnealingLR) and cosine.T_max == 10


def test_constructor_errors_pass_through():
    params = build_model(MODEL, 2).parameters()
    with pytest.raises(ValueError, match="Invalid betas"):
        build_optimizer({"type": "adam", "betas": [0.9, 1.0]}, params)
    with pytest.raises(ValueError, match="T_max is required"):
        build_scheduler({"type": "cosine"}, build_optimizer("sgd", params))


CONVNET = [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    "batch_norm2d",
    "relu",
    {"type": "max_pool2d", "kernel_size": 2},
    {"type": "Conv2d", "out_channels": 6, "kernel_size": [2, 3], "stride": [1, 2]},
    "flatten",
    "layer_norm",
    {"type": "linear", "out_features": 5},
    "batch_norm1d",
    {"type": "bilinear", "out_features": 3},
]


def test_shapes_flow_through_a_convnet_and_sizes_are_injected():
    assert infer_shapes(CONVNET, (1, 8, 9)) == [
        (1, 8, 9), (4, 8, 9), (4, 8, 9), (4, 8, 9), (4, 4, 4), (6, 3, 1), (18,), (18,), (5,),
        (5,), (3,)]
    net = build_model(CONVNET, (1, 8, 9))
    assert (net[0].in_channels, net[4].in_channels) == (1, 4)
    assert (net[1].num_features, net[6].normalized_shape, net[7].in_features) == (4, 18, 18)
    assert (net[8].num_features, net[9].in_features) == (5, 5)
    assert net(torch.randn(3, 1, 8, 9)).shape == (3, 3)


@pytest.mark.parametrize("model,shape,message", [
    ([{"type": "conv2d", "out_channels": 16, "kernel_size": 5}, "relu",
      {"type": "conv2d", "out_channels": 16, "kernel_size": 3},
      {"type": "linear", "out_features": 10}], (1, 12, 12),
     "model[3]: linear needs (N, F), got (N, 16, 6, 6); add a flatten"),
    ([{"type": "conv2d", "out_channels": 4, "kernel_size": 3}], (5,),
     "model[0]: conv2d needs (N, C, H, W), got (N, 5)"),
    ([{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, "flatten",
      {"type": "max_pool2d", "kernel_size": 2}], (1, 4, 4),
     "model[2]: max_pool2d needs (N, C, H, W), got (N, 8); move it before the flatten"),
    (["batch_norm1d"], (2, 3, 3),
     "model[0]: batch_norm1d needs (N, C) or (N, C, L), got (N, 2, 3, 3); use batch_norm2d"),
    ([{"type": "max_pool2d", "kernel_size": 2}, {"type": "max_pool2d", "kernel_size": 3}],
     (1, 5, 5), "model[1]: max_pool2d has a 3×3 window, larger than its input 2×2; "),
    (["flatten", "batch_norm2d"], (2, 3, 3),
     "model[1]: batch_norm2d needs (N, C, H, W), got (N, 18); use batch_norm1d after a "
     "flatten, or move it before the flatten"),
    ([{"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 1}], (1, 4, 4),
     "model[0].in_channels: is 3 but the data has 1 channels; remove it (it is inferred) "
     "or set it to 1"),
    ([{"type": "conv2d", "out_channels": 4, "kernel_size": 0}], (1, 4, 4),
     "model[0].kernel_size: must be >= 1, got 0"),
    ([{"type": "conv2d", "out_channels": 4, "kernel_size": 1, "stride": 0}], (1, 4, 4),
     "model[0].stride: must be >= 1, got 0"),
])
def test_a_layer_that_cannot_take_its_input_shape_is_a_build_error(model, shape, message):
    with pytest.raises(ValueError) as raised:
        build_model(model, shape)
    assert str(raised.value).startswith(message), str(raised.value)


class WrongBackward(nn.Module):
    """A plugin-like layer without output_shape whose backward drops the batch dimension."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad_output):
        return (2 * grad_output).sum(0)


class Scaled(nn.Module):
    """A plugin-like layer with a weight, a buffer and randomness in forward."""

    def __init__(self, in_features):
        self.weight = nn.Parameter(torch.ones(in_features))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        self._x = x
        return x * self.weight.data + 0 * torch.rand(())

    def backward(self, grad_output):
        self.weight.grad += (grad_output * self._x).sum(0) + 1
        return grad_output * self.weight.data


@pytest.fixture
def registered():
    from minidl_cli import registry

    names = []

    def register(name, cls):
        registry.register("layer", name)(cls)
        names.append(name)

    yield register
    for name in names:
        registry.unregister("layer", name)


def test_the_registry_forgets_what_was_registered_inside_restored():
    """registry.restored() undoes a registration and a replacement; unregister drops one
    name with its aliases (the tests' isolation and plugin reloading rest on both)."""
    from minidl_cli import registry

    class OtherReLU(Scaled):
        """A stand-in registered over relu."""

    relu = registry.lookup("layer", "relu").target
    with registry.restored():
        registry.register("layer", "test_build_swapped", aliases=("TestBuildAlias",))(Scaled)
        registry.register("layer", "relu")(OtherReLU)
        assert registry.lookup("layer", "testbuildalias").target is Scaled
        assert registry.lookup("layer", "relu").target is OtherReLU
        registry.unregister("layer", "test_build_swapped")
        with pytest.raises(ValueError, match="unknown layer 'testbuildalias'"):
            registry.lookup("layer", "testbuildalias")
        registry.register("layer", "test_build_swapped")(Scaled)
    assert registry.lookup("layer", "relu").target is relu
    assert "test_build_swapped" not in registry.names("layer")


def test_a_backward_of_the_wrong_shape_is_a_build_error_naming_the_layer(registered):
    registered("test_build_wrong_backward", WrongBackward)
    model = [{"type": "linear", "out_features": 4}, "test_build_wrong_backward",
             {"type": "linear", "out_features": 2}]
    with pytest.raises(ValueError, match=(
            r"^model\[1\]: test_build_wrong_backward\.backward returned shape \(4,\) for a "
            r"batch of shape \(2, 4\); it must return dL/dx, shaped like the input$")):
        build_model(model, (2,))


def test_probing_a_plugin_leaves_rng_grads_buffers_and_mode_alone(registered):
    registered("test_build_scaled", Scaled)
    torch.manual_seed(0)
    net = build_model([{"type": "linear", "out_features": 3}, "test_build_scaled"], 2)
    after = torch.rand(2)
    torch.manual_seed(0)
    by_hand = nn.Sequential(nn.Linear(2, 3), Scaled(3))
    assert torch.equal(after, torch.rand(2))  # the probe drew nothing from the global RNG
    assert torch.equal(net[0].weight.data, by_hand[0].weight.data)
    assert net[1].training and net[1].calls.item() == 0
    assert all(p.grad.abs().sum() == 0 for p in net.parameters())


def resolve_problems(raw):
    from minidl_cli.config import ConfigError

    with pytest.raises(ConfigError) as info:
        resolve(raw)
    return info.value.problems


DIGITS = {"seed": 0, "data": {"type": "digits"}, "loss": "cross_entropy",
          "optimizer": {"type": "sgd", "lr": 0.1}, "train": {"batch_size": 32}}


def test_resolving_a_convnet_records_the_inferred_sizes():
    model = [{"type": "conv2d", "out_channels": 8, "kernel_size": 3}, "batch_norm2d", "relu",
             {"type": "max_pool2d", "kernel_size": 2}, "flatten", "layer_norm",
             {"type": "linear", "out_features": 10}]
    config = resolve({**DIGITS, "model": model})
    assert config["model"][0]["in_channels"] == 1
    assert config["model"][1]["num_features"] == 8
    assert config["model"][5]["normalized_shape"] == 72 and config["model"][6]["in_features"] == 72
    assert resolve(config) == config  # the resolved config describes the run by itself


def test_output_check_words_image_outputs_classes_and_regression_targets():
    conv = {"type": "conv2d", "out_channels": 8, "kernel_size": 3}
    assert resolve_problems({**DIGITS, "model": [conv]}) == [
        "model: the network outputs (N, 8, 6, 6) but the data has 10 classes, which needs "
        "(N, 10); end it with {type: linear, out_features: 10} (after a flatten)"]
    assert resolve_problems({**DIGITS, "model": [conv, "flatten", {
        "type": "linear", "in_features": 288, "out_features": 9}]}) == [
        "model[2].out_features: the network outputs 9 values but the data has 10 classes; "
        "set it to 10"]
    assert resolve_problems({**DIGITS, "model": [conv, {"type": "linear", "out_features": 10}]}) \
        == ["model[1]: linear needs (N, F), got (N, 8, 6, 6); add a flatten"]


def test_output_check_counts_regression_targets(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.5}\n" for i in range(20)))
    raw = {"seed": 0, "data": {"type": "csv", "train": str(table), "test_fraction": 0.25,
                               "label": "y", "task": "regression"},
           "model": [{"type": "linear", "out_features": 2}], "loss": "mse",
           "optimizer": {"type": "sgd", "lr": 0.1}, "train": {"batch_size": 5}}
    assert resolve_problems(raw) == [
        "model[0].out_features: the network outputs 2 values but the data has 1 regression "
        "target; set it to 1"]


def test_batch_norm_refuses_a_last_batch_of_one():
    """A training batch of one leaves batch norm one value per feature (torch.nn raises
    mid-epoch); the config check says so before anything runs."""
    model = [{"type": "linear", "out_features": 4}, "batch_norm1d",
             {"type": "linear", "out_features": 2}]
    raw = {"seed": 0, "data": {"type": "disk", "n_train": 21, "n_test": 10}, "model": model,
           "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1},
           "train": {"batch_size": 10}}
    assert resolve_problems(raw) == [
        "train.batch_size: 10 leaves a last batch of 1 of the 21 training points, and "
        "model[1] (batch norm) needs two or more in training; use another batch size, e.g. 11"]
    assert resolve({**raw, "train": {"batch_size": 11}})["model"][1]["num_features"] == 4
    assert resolve_problems({**raw, "train": {"batch_size": 1}})[0].startswith(
        "train.batch_size: 1 leaves model[1] (batch norm) one value per channel")


def test_train_and_gradcheck_name_a_plugin_whose_backward_has_the_wrong_shape(tmp_path):
    """Shared case plugin-backward-wrong-shape: one line, exit 2, before anything is written."""
    from tests.helpers import TINY, invoke, write_config

    (tmp_path / "badshape_plugin.py").write_text(
        "from minidl_cli.nn import Module\nfrom minidl_cli.registry import register\n"
        "@register('layer', 'test_build_badshape')\nclass BadShape(Module):\n"
        "    def forward(self, x):\n        return 2 * x\n"
        "    def backward(self, g):\n        return (2 * g).sum(dim=0)\n")
    model = [{"type": "linear", "out_features": 4}, "test_build_badshape",
             {"type": "linear", "out_features": 2}]
    path = write_config(tmp_path, {**TINY, "model": model, "plugins": ["badshape_plugin"]})
    try:
        for command in ("train", "gradcheck"):
            result = invoke(command, path)
            assert result.exit_code == 2, result.output
            assert result.output == (
                "error: model[1]: test_build_badshape.backward returned shape (4,) for a batch "
                "of shape (2, 4); it must return dL/dx, shaped like the input\n")
        assert not (tmp_path / "runs").exists()
    finally:
        from minidl_cli import registry

        registry.unregister("layer", "test_build_badshape")


def test_an_embedding_on_data_without_a_vocabulary_says_what_it_takes():
    """An embedding reads num_embeddings off a text data set's vocabulary; on float features
    the error says so (it was a Python comparison error about None)."""
    from minidl_cli.build import build_layers

    with pytest.raises(ValueError, match=r"model\[0\]: embedding takes token ids.*no "
                                         r"vocabulary.*set num_embeddings"):
        build_layers([{"type": "embedding", "embedding_dim": 4, "num_embeddings": None},
                      "flatten"], (40,))


def test_self_attention_errors_name_the_fix():
    from minidl_cli.build import build_layers

    with pytest.raises(ValueError, match=r"model\[0\]\.num_heads: 3 must divide embed_dim 4.*"
                                         r"\[1, 2, 4\]"):
        build_layers([{"type": "self_attention", "num_heads": 3}], (5, 4))
    with pytest.raises(ValueError, match=r"model\[0\]: self_attention needs a sequence.*"
                                         r"unflattened_size: \[40, 1\]"):
        build_layers([{"type": "self_attention"}], (40,))


def test_a_recurrent_sequence_fed_to_a_classifier_is_told_about_output_last(tmp_path):
    """A gru's per-step output ends in (N, T, 10): the advice names output: last as well as
    a flatten (the model already ends with the linear layer the old advice proposed)."""
    from helpers import invoke, write_config

    config = {"data": {"type": "mnist1d"}, "loss": "cross_entropy",
              "model": [{"type": "unflatten", "unflattened_size": [40, 1]},
                        {"type": "gru", "hidden_size": 4}, {"type": "linear", "out_features": 10}],
              "optimizer": {"type": "adam"}, "train": {"epochs": 1, "batch_size": 100}}
    result = invoke("train", write_config(tmp_path, config))
    assert result.exit_code == 2 and "give model[1] output: last" in result.output


EMBEDDING = {"type": "embedding", "embedding_dim": 8}


@pytest.mark.parametrize("model, message", [
    ([EMBEDDING, {"type": "embedding", "embedding_dim": 4}, "flatten",
      {"type": "linear", "out_features": 34}],
     "model[1]: embedding takes token ids, but model[0] gives floats (N, 4, 8); remove it"),
    ([EMBEDDING, {"type": "embedding", "embedding_dim": 4, "num_embeddings": 50}],
     "model[1]: embedding takes token ids, but model[0] gives floats (N, 4, 8); remove it"),
    ([{"type": "linear", "out_features": 8}, {"type": "gru", "hidden_size": 8}],
     "model[0]: linear takes float features, but the data gives token ids (N, 4) int64; "
     "put an embedding first"),
    ([{"type": "gru", "hidden_size": 8, "output": "last"}],
     "model[0]: gru takes float features, but the data gives token ids (N, 4) int64; "
     "put an embedding first"),
    (["flatten", {"type": "residual", "body": [{"type": "linear", "out_features": 4}]}],
     "model[1].body[0]: linear takes float features, but model[1].body's input gives token "
     "ids (N, 4) int64; put an embedding first"),
    ([{"type": "concat", "branches": [[EMBEDDING], ["flatten", EMBEDDING]]},
      {"type": "residual", "body": [EMBEDDING]}],
     "model[1].body[0]: embedding takes token ids, but model[1].body's input gives floats "
     "(N, 8, 8)"),
    # only the layers that declare it carry ids (flatten, unflatten, identity): a relu or a
    # dropout keeps their dtype yet computes with them, and crashed at the first step
    (["relu", EMBEDDING], "model[0]: relu takes float features, but the data gives token "
     "ids (N, 4) int64; put an embedding first"),
    (["identity", "dropout", EMBEDDING], "model[1]: dropout takes float features, but "
     "the data gives token ids (N, 4) int64; put an embedding first"),
    ([{"type": "repeat", "times": 1, "body": ["flatten", "relu"]}, EMBEDDING],
     "model[0].body[1]: relu takes float features"),
    ([{"type": "residual", "body": ["identity"]}, EMBEDDING],
     "model[0]: residual adds token ids (N, 4) int64 from model[0].body as numbers; begin its "
     "body and a shortcut with an embedding, or put the embedding before it"),
    ([{"type": "residual", "body": [EMBEDDING]}],
     "model[0]: residual adds token ids (N, 4) int64 (its input: no shortcut) as numbers"),
    # ids beside floats reach the next layer as numbers, whatever it is
    ([{"type": "concat", "branches": [[EMBEDDING, "flatten"], ["flatten"]]},
      {"type": "linear", "out_features": 34}],
     "model[0]: concat joins token ids (N, 4) int64 from model[0].branches[1] to floats from "
     "its other branches, and the layer after it would take the ids as numbers; begin "
     "model[0].branches[1] with an embedding too"),
])
def test_token_ids_must_meet_an_embedding_first_and_only_there(model, message):
    """On a text data set's token ids, the first layer that takes them must be an embedding,
    and an embedding takes nothing else: both are build errors naming that layer."""
    from minidl_cli.build import build_layers

    with pytest.raises(ValueError) as error:
        build_layers(model, (4,), data={"vocabulary_size": 34})
    assert str(error.value).startswith(message), str(error.value)


def test_token_ids_pass_through_flatten_and_blocks_to_their_embeddings():
    from minidl_cli.build import build_layers

    model = ["flatten", {"type": "concat", "dim": 2, "branches": [[EMBEDDING], [EMBEDDING]]},
             {"type": "residual", "body": [{"type": "linear", "out_features": 16}]}]
    _, shapes = build_layers(model, (4,), data={"vocabulary_size": 34})
    assert shapes[-1] == (4, 16)
    model = [{"type": "unflatten", "unflattened_size": [2, 2]}, "identity",
             {"type": "repeat", "times": 2, "body": ["identity"]}, "flatten",
             {"type": "concat", "branches": [["identity"], ["flatten"]]},
             {"type": "residual", "body": [EMBEDDING], "shortcut": [EMBEDDING]}]
    _, shapes = build_layers(model, (4,), data={"vocabulary_size": 34})
    assert shapes[-1] == (8, 8)


def test_a_positional_embedding_may_hold_more_positions_than_the_sequences():
    """max_len is the least the sequences need: a larger table (nanoGPT's block_size beyond
    the context trained on) is kept and trains its first T rows; a smaller one is refused
    naming the sequence length, not 'channels'."""
    from minidl_cli.build import build_layers
    from minidl_cli.gradcheck import check_module

    model = [EMBEDDING, {"type": "positional_embedding", "max_len": 64}]
    cfg = [dict(layer) for layer in model]
    net, shapes = build_layers(cfg, (4,), record=True, data={"vocabulary_size": 34})
    assert net[1].weight.shape == (64, 8) and shapes[-1] == (4, 8)
    assert cfg[1]["max_len"] == 64  # the run's config records the table it trained
    ids = torch.randint(0, 34, (3, 4), generator=torch.Generator().manual_seed(0))
    report = check_module(net.to(torch.float64), ids)
    assert report.passed() and float(net[1].weight.grad[4:].abs().sum()) == 0
    with pytest.raises(ValueError) as error:
        build_layers([EMBEDDING, {"type": "positional_embedding", "max_len": 3}], (4,),
                     data={"vocabulary_size": 34})
    assert str(error.value) == ("model[1].max_len: is 3 but model[0] outputs 4 positions; "
                                "remove it (it is inferred) or set it to 4 or more")


@pytest.mark.parametrize("layer", [{"type": "positional_embedding", "max_len": 10**14},
                                   {"type": "linear", "out_features": 10**14}])
def test_a_layer_beyond_memory_names_its_largest_size(layer):
    """A table or weight that cannot be allocated (10^14 rows: petabytes) is one line naming
    the option to shrink, not the allocator's RuntimeError."""
    from minidl_cli.build import build_layers

    with pytest.raises(ValueError) as error:
        build_layers([EMBEDDING, layer], (4,), data={"vocabulary_size": 34})
    option = next(k for k in layer if k != "type")
    assert str(error.value) == (f"model[1]: its parameters do not fit in this machine's memory; "
                                f"make model[1].{option} ({10**14}) smaller")


def test_an_embedding_may_hold_more_rows_than_the_vocabulary():
    """num_embeddings is at least the data's vocabulary (torch.nn.Embedding takes any table;
    nanoGPT pads its vocabulary to a multiple of 64): a larger table is kept and its extra
    rows get no gradient; a smaller one is refused naming the vocabulary."""
    from minidl_cli.build import build_layers

    cfg = [{"type": "embedding", "embedding_dim": 8, "num_embeddings": 40}]
    net, shapes = build_layers(cfg, (4,), record=True, data={"vocabulary_size": 34})
    assert net[0].weight.shape == (40, 8) and cfg[0]["num_embeddings"] == 40
    net(torch.randint(0, 34, (3, 4)))
    net.backward(torch.ones(3, 4, 8))
    assert float(net[0].weight.grad[34:].abs().sum()) == 0
    with pytest.raises(ValueError) as error:
        build_layers([{"type": "embedding", "embedding_dim": 8, "num_embeddings": 10}], (4,),
                     data={"vocabulary_size": 34})
    assert str(error.value) == ("model[0].num_embeddings: is 10 but the data has 34 vocabulary "
                                "entries; remove it (it is inferred) or set it to 34 or more")
