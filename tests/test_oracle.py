"""Every registered layer and loss against torch autograd in float64, through one helper.

The cases are keyed by registry name and the tests are parametrised over the registry
itself, so registering a layer without an oracle case fails `test_every_layer_has_a_case`.
"""

import pytest
import torch
import torch.nn.functional as F

from minidl_cli import nn, registry
from minidl_cli.gradcheck import central_difference, check_loss, check_module, check_network

SHAPES = [(1, 3), (4, 7), (17, 5), (64, 25)]  # (batch, features): batch 1 included
T = 3  # the time steps of the (N, T, F) cases: the layers that take (N, *, F)


def eval_with_running_stats(bn):
    """A batch norm in eval mode with running statistics away from the initial 0 and 1."""
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    return bn.eval()


# name -> (n, d) -> modules (inputs (n, d)) or (module, input shape): odd sizes, strides,
# padding, non-square kernels, no bias, both batch norm modes
LAYER_CASES = {
    "linear": lambda n, d: [nn.Linear(d, 6), nn.Linear(d, 3, bias=False),
                            nn.Linear(d, 4, init="kaiming_normal"),
                            (nn.Linear(d, 5), (n, T, d)), (nn.Linear(d, 2, bias=False), (n, T, d))],
    "identity": lambda n, d: [nn.Identity()],
    "relu": lambda n, d: [nn.ReLU(), (nn.ReLU(), (n, T, d))],
    "leaky_relu": lambda n, d: [nn.LeakyReLU(), nn.LeakyReLU(0.3), nn.LeakyReLU(-0.2),
                                (nn.LeakyReLU(0.3), (n, T, d))],
    "elu": lambda n, d: [nn.ELU(), nn.ELU(alpha=0.5), nn.ELU(alpha=-0.5),
                         (nn.ELU(), (n, T, d))],
    "tanh": lambda n, d: [nn.Tanh(), (nn.Tanh(), (n, T, d))],
    "sigmoid": lambda n, d: [nn.Sigmoid(), (nn.Sigmoid(), (n, T, d))],
    "softmax": lambda n, d: [nn.Softmax(), nn.Softmax(dim=0), (nn.Softmax(), (n, T, d))],
    "dropout": lambda n, d: [nn.Dropout(0.3), nn.Dropout(0.5).eval(), nn.Dropout(0.0),
                             (nn.Dropout(0.3), (n, T, d))],
    "conv2d": lambda n, d: [
        (nn.Conv2d(3, 4, 3), (n, 3, d + 2, d + 3)),
        (nn.Conv2d(2, 5, (3, 2), stride=2, padding=1, bias=False), (n, 2, d + 4, d + 1)),
        (nn.Conv2d(1, 3, (1, 4), stride=(1, 3), padding=(2, 0)), (n, 1, d + 1, d + 4)),
        # strides that leave rows and columns unread, dilation, groups
        (nn.Conv2d(4, 6, 3, stride=(3, 2), padding=(0, 1), dilation=(1, 2), groups=2),
         (n, 4, d + 5, d + 4)),
        (nn.Conv2d(3, 3, (2, 3), stride=2, dilation=2, groups=3, bias=False),
         (n, 3, d + 6, d + 5)),
        # C·kH·kW <= out_channels: the weight gradient over im2col patches
        (nn.Conv2d(1, 6, (2, 3), stride=(2, 1), padding=1, dilation=(1, 2)), (n, 1, d + 3, d + 4)),
    ],
    "max_pool2d": lambda n, d: [
        (nn.MaxPool2d(2), (n, 3, d + 1, d + 2)),  # odd sizes: the last row is left out
        (nn.MaxPool2d((3, 2), stride=(2, 1), padding=1), (n, 2, d + 2, d + 3)),
        (nn.MaxPool2d(3, stride=1), (n, 1, d + 2, d)),  # overlapping windows
    ],
    "avg_pool2d": lambda n, d: [
        (nn.AvgPool2d(2), (n, 3, d + 1, d + 2)),  # a column no window reads
        (nn.AvgPool2d((2, 3)), (n, 2, 4, 6)),  # windows tile the input exactly
        (nn.AvgPool2d((3, 2), stride=(2, 1), padding=1), (n, 2, d + 2, d + 3)),
        (nn.AvgPool2d(3, stride=1, padding=1), (n, 1, d + 2, d)),
    ],
    "flatten": lambda n, d: [(nn.Flatten(), (n, 3, d, 2)), (nn.Flatten(2), (n, 3, d, 2)),
                             nn.Flatten()],
    "batch_norm1d": lambda n, d: [
        (nn.BatchNorm1d(d), (n + 2, d)),  # two values per feature would make x̂ = ±1
        (nn.BatchNorm1d(d, affine=False, momentum=None), (n, d, 3)),
        (nn.BatchNorm1d(d, eps=1e-3, momentum=0.5), (n, d, 2)),
        eval_with_running_stats(nn.BatchNorm1d(d)),
    ],
    "batch_norm2d": lambda n, d: [
        (nn.BatchNorm2d(3), (n, 3, d, 2)),
        (nn.BatchNorm2d(2, affine=False, eps=1e-2), (n, 2, 3, d)),
        (eval_with_running_stats(nn.BatchNorm2d(3)), (n, 3, d, 2)),
    ],
    "layer_norm": lambda n, d: [
        nn.LayerNorm(d),
        (nn.LayerNorm(d), (n, T, d)),
        (nn.LayerNorm(d, elementwise_affine=False), (n, 2, d)),
        (nn.LayerNorm(d, eps=1e-3, bias=False), (n, 3, 2, d)),
    ],
    "bilinear": lambda n, d: [nn.Bilinear(d, 4), nn.Bilinear(d, 1, bias=False)],
    "global_avg_pool": lambda n, d: [(nn.GlobalAvgPool(), (n, 3, d)),
                                     (nn.GlobalAvgPool(), (n, 2, d, 3)),
                                     (nn.GlobalAvgPool(), (n, 2, 2, d, 3))],
    "group_norm": lambda n, d: [(nn.GroupNorm(2, 4), (n, 4, d)),
                                (nn.GroupNorm(3, 3, affine=False), (n, 3, d, 2)),
                                (nn.GroupNorm(1, d, eps=1e-3), (n, d))],
    # blocks: every case fans a tensor out to several paths, whose gradients must add up
    "residual": lambda n, d: [
        nn.Residual([nn.Linear(d, 6), nn.Tanh(), nn.Linear(6, d)]),
        # nested residuals, and a shortcut that resizes: x reaches the output three ways
        nn.Residual([nn.Residual([nn.Linear(d, d), nn.Tanh(), nn.Residual([nn.ELU()])]),
                     nn.Linear(d, 4)], shortcut=[nn.Linear(d, 4, bias=False)]),
        (nn.Residual([nn.BatchNorm1d(d), nn.Sigmoid()]), (n + 2, d)),  # buffers in a body
        # random draws on both paths: the twin draws them in the same order
        nn.Residual([nn.Linear(d, d), nn.Dropout(0.3)], shortcut=[nn.Dropout(0.5)]),
        (nn.Residual([nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4)],
                     shortcut=[nn.Conv2d(3, 4, 1, stride=2)]), (n, 3, d + 1, d)),
    ],
    "concat": lambda n, d: [
        # a concat of a residual, a plain and an identity branch: x feeds all three
        nn.Concat([[nn.Residual([nn.Linear(d, d), nn.Tanh()])], [nn.Linear(d, 3)],
                   [nn.Identity()]]),
        (nn.Concat([[nn.Linear(d, 2)], [nn.Tanh(), nn.Linear(d, 5)]], dim=-1), (n, 3, d)),
        (nn.Concat([[nn.Conv2d(2, 3, 1)], [nn.MaxPool2d(3, stride=1, padding=1)],
                    [nn.Residual([nn.Conv2d(2, 2, 3, padding=1)])]]), (n, 2, d, d + 1)),
    ],
    "repeat": lambda n, d: [
        nn.Repeat(3, lambda: [nn.Linear(d, d), nn.Tanh()]),  # a repeat of 3
        nn.Repeat(3, lambda: nn.Residual([nn.LayerNorm(d), nn.Linear(d, d), nn.ELU()])),
        nn.Repeat(1, lambda: [nn.Linear(d, 4)]),
    ],
    "conv1d": lambda n, d: [
        (nn.Conv1d(3, 4, 3), (n, 3, d + 2)),
        (nn.Conv1d(1, 5, 5, stride=2, padding=1), (n, 1, d + 6)),  # MNIST-1D's first layer
        (nn.Conv1d(4, 6, 3, stride=3, padding=1, dilation=2, groups=2, bias=False),
         (n, 4, d + 7)),  # a stride that leaves positions unread, dilation, groups
    ],
    "max_pool1d": lambda n, d: [(nn.MaxPool1d(2), (n, 3, d + 1)),
                                (nn.MaxPool1d(3, stride=1, padding=1), (n, 2, d + 2))],
    "avg_pool1d": lambda n, d: [(nn.AvgPool1d(2), (n, 3, d + 1)),
                                (nn.AvgPool1d(3, stride=2, padding=1), (n, 2, d + 3))],
    "unflatten": lambda n, d: [(nn.Unflatten([d, 1]), (n, d)), (nn.Unflatten([1, d]), (n, d))],
    # token ids: integers, drawn by ids(vocabulary, T); several positions share an id
    "embedding": lambda n, d: [(nn.Embedding(d + 2, 4), ids(d + 2, T)),
                               (nn.Embedding(3, d), ids(3, 1))],
    # backprop through time: both directions, two layers, the last state only, T = 1
    "rnn": lambda n, d: [
        (nn.RNN(d, 4), (n, T, d)),
        (nn.RNN(d, 3, num_layers=2, bidirectional=True, nonlinearity="relu"), (n, T, d)),
        (nn.RNN(d, 2, bias=False, output="last", bidirectional=True), (n, T, d)),
        (nn.RNN(d, 3), (n, 1, d)),
    ],
    "lstm": lambda n, d: [
        (nn.LSTM(d, 4), (n, T, d)),
        (nn.LSTM(d, 3, num_layers=2, bidirectional=True), (n, T, d)),
        (nn.LSTM(d, 2, bias=False, output="last", num_layers=2), (n, T, d)),
        (nn.LSTM(d, 3, bidirectional=True, output="last"), (n, 1, d)),
    ],
    "gru": lambda n, d: [
        (nn.GRU(d, 4), (n, T, d)),
        (nn.GRU(d, 3, num_layers=2, bidirectional=True), (n, T, d)),
        (nn.GRU(d, 2, bias=False, output="last", bidirectional=True), (n, T, d)),
        (nn.GRU(d, 3, num_layers=2, output="last"), (n, 1, d)),
    ],
    "gelu": lambda n, d: [nn.GELU(), nn.GELU("tanh"), (nn.GELU("tanh"), (n, T, d))],
    "positional_embedding": lambda n, d: [(nn.PositionalEmbedding(T + 2, d), (n, T, d)),
                                          (nn.PositionalEmbedding(1, d), (n, 1, d))],
    # the causal mask and without, several head counts, T = 1
    "self_attention": lambda n, d: [
        (nn.SelfAttention(4, 1), (n, T, 4)),
        (nn.SelfAttention(6, 3, causal=True), (n, T + 2, 6)),
        (nn.SelfAttention(8, 2, causal=True, bias=False), (n, T, 8)),
        (nn.SelfAttention(4, 4, causal=True), (n, 1, 4)),
    ],
}


def ids(vocabulary, steps):
    """An input maker for token-id layers: (n, d) -> int64 ids (n, steps) in 0..vocabulary-1."""
    return lambda n, gen: torch.randint(0, vocabulary, (n, steps), generator=gen)


def layer_cases(name, n, d):
    """[(module in float64, input shape)] for registry name `name`."""
    cases = [c if isinstance(c, tuple) else (c, (n, d)) for c in LAYER_CASES[name](n, d)]
    return [(module.to(dtype=torch.float64), shape) for module, shape in cases]


def make_input(x_shape, n, gen, scale=2.0, shift=0.0):
    """A float64 input of `x_shape`, or a case's own input (token ids) when it gives a maker."""
    if callable(x_shape):
        return x_shape(n, gen)
    return torch.randn(x_shape, dtype=torch.float64, generator=gen) * scale + shift


def test_every_layer_has_a_case():
    missing = set(registry.names("layer")) - set(LAYER_CASES)
    assert not missing, f"registered layers without an oracle case: {sorted(missing)}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", registry.names("layer"))
def test_layer_matches_autograd(name, shape):
    n, d = shape
    torch.manual_seed(n * 100 + d)
    gen = torch.Generator().manual_seed(n * 100 + d)  # apart from the RNG check_module seeds
    for module, x_shape in layer_cases(name, n, d):
        x = make_input(x_shape, n, gen)
        report = check_module(module, x, name=name)
        assert report.passed(), f"{module}: {report.errors}"
        inputs = {"input"} if x.is_floating_point() else set()
        assert set(report.errors) == {"output", *inputs, *dict(module.named_parameters()),
                                      *dict(module.named_buffers())}


@pytest.mark.parametrize("name", registry.names("layer"))
def test_layer_matches_central_differences(name):
    torch.manual_seed(0)
    # x from its own generator: not the draws central_difference makes for g and v (with
    # g = x, a normalisation's ⟨g, J v⟩ is ~0 and its relative error meaningless)
    gen = torch.Generator().manual_seed(12345)
    for module, x_shape in layer_cases(name, 8, 5):
        x = make_input(x_shape, 8, gen, scale=1.0, shift=0.05)  # off ReLU's kink
        if x.is_floating_point():
            assert central_difference(module, x) < 1e-6, module
        else:  # token ids have no derivative: nothing checked is no match either
            assert central_difference(module, x) is None, module


def test_gradcheck_of_an_embedding_shows_no_central_difference_it_did_not_take():
    """The network check holds no central difference (None: gradcheck prints '-', as for
    the loss) where a module's input is token ids, and one for the layers after it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Flatten(), nn.Linear(12, 7)).to(torch.float64)
    ids = torch.randint(0, 7, (5, 3), generator=torch.Generator().manual_seed(1))
    report = check_network(model, nn.CrossEntropyLoss(), ids, torch.tensor([0, 1, 2, 3, 4]))
    numeric = [n for _, n in report.rows]
    assert numeric[0] is None and numeric[-1] is None  # the embedding's ids; the loss
    assert all(0 <= n < 1e-5 for n in numeric[1:-1]) and report.passed()


def test_whole_network_matches_torch_sequential():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 25), nn.ReLU(), nn.Linear(25, 25), nn.ELU(),
                        nn.Linear(25, 2), nn.Tanh()).to(dtype=torch.float64)
    report = check_module(net, torch.rand(100, 2, dtype=torch.float64))
    assert report.passed(), report.errors
    assert {"0.weight", "0.bias", "2.weight", "4.bias"} <= set(report.errors)


def test_a_module_without_a_twin_is_never_compared_with_itself():
    """Without a torch.nn twin, the output has no independent reference: the report says
    so and holds no output error (a 0.0 would read as a match)."""
    from minidl_cli.gradcheck import NO_TWIN

    class Swish(nn.Module):
        def forward(self, x):
            self._x, self._s = x, torch.sigmoid(x)
            return x * self._s

        def backward(self, grad_output):
            s = self._s
            return grad_output * (s + self._x * s * (1 - s))  # d(x σ(x))/dx = σ + x σ (1 − σ)

    report = check_module(Swish(), torch.randn(5, 4, dtype=torch.float64))
    assert report.reference == NO_TWIN and "output" not in report.errors
    assert report.passed() and set(report.errors) == {"input"}
    report = check_module(nn.Tanh(), torch.randn(5, 4, dtype=torch.float64))
    assert report.reference != NO_TWIN and "output" in report.errors


def test_oracle_catches_a_wrong_backward():
    class BrokenTanh(nn.Tanh):
        def backward(self, grad_output):
            return grad_output * (1 - self._output)  # wrong: should be 1 − y²

    report = check_module(BrokenTanh(), torch.randn(5, 4, dtype=torch.float64))
    assert not report.passed() and report.errors["input"] > 1e-3


def test_softmax_uses_the_full_jacobian_not_the_diagonal():
    x = torch.randn(6, 4, dtype=torch.float64)
    g = torch.randn(6, 4, dtype=torch.float64)
    softmax = nn.Softmax()
    s = softmax(x)
    diagonal_only = g * s * (1 - s)
    assert not torch.allclose(softmax.backward(g), diagonal_only)


LOSS_CASES = {
    "mse": [
        (lambda: nn.MSELoss(), lambda p, t: F.mse_loss(p, t)),
        (lambda: nn.MSELoss(reduction="sum"), lambda p, t: F.mse_loss(p, t, reduction="sum")),
    ],
    "l1": [(lambda: nn.L1Loss(), F.l1_loss)],  # ties, both reductions: test_losses.py
    "huber": [(lambda: nn.HuberLoss(delta=0.7), lambda p, t: F.huber_loss(p, t, delta=0.7))],
    "smooth_l1": [(lambda: nn.SmoothL1Loss(beta=0.7),
                   lambda p, t: F.smooth_l1_loss(p, t, beta=0.7))],
    "cross_entropy": [
        (lambda: nn.CrossEntropyLoss(), lambda p, t: F.cross_entropy(p, t)),
        (lambda: nn.CrossEntropyLoss(reduction="sum"),
         lambda p, t: F.cross_entropy(p, t, reduction="sum")),
    ],
}


def _target(name, n, c):
    if name == "cross_entropy":
        return torch.randint(0, c, (n,))
    return torch.randn(n, c, dtype=torch.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(1, 1, 2), (4, 3, 5), (16, 7, 27)], ids=str)
def test_cross_entropy_of_sequences_matches_functional(shape, reduction):
    """(N, T, V) logits, class axis last, with (N, T) labels: every position is counted, as
    torch's cross_entropy of the same logits with the class axis moved to 1."""
    n, t, v = shape
    gen = torch.Generator().manual_seed(n * t + v)
    logits = torch.randn(shape, dtype=torch.float64, generator=gen) * 3
    labels = torch.randint(0, v, (n, t), generator=gen)
    report = check_loss(nn.CrossEntropyLoss(reduction=reduction), logits, labels,
                        lambda p, y: F.cross_entropy(p.transpose(1, 2), y, reduction=reduction))
    assert report.passed(), report.errors


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_ignores_padding_labels_as_torch_does(reduction):
    """Labels equal to ignore_index (-100, torch's default) are no rows: no loss, no
    gradient, not counted in the mean."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, 5, dtype=torch.float64, generator=gen) * 3
    labels = torch.randint(0, 5, (4, 6), generator=gen)
    labels[:, :2] = -100  # a text line's leading padding
    report = check_loss(nn.CrossEntropyLoss(reduction=reduction), logits, labels,
                        lambda p, y: F.cross_entropy(p.transpose(1, 2), y, reduction=reduction))
    assert report.passed(), report.errors
    loss = nn.CrossEntropyLoss(reduction=reduction)
    loss(logits, labels)
    assert torch.count_nonzero(loss.backward()[:, :2]) == 0


def test_cross_entropy_of_sequences_rejects_labels_of_another_shape():
    with pytest.raises(ValueError, match=r"\(N, T\) for logits \(N, T, C\)"):
        nn.CrossEntropyLoss()(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.int64))


def test_every_loss_has_a_case():
    assert set(registry.names("loss")) <= set(LOSS_CASES)


@pytest.mark.parametrize("shape", [(1, 2), (10, 3), (100, 7)], ids=str)
@pytest.mark.parametrize("name", registry.names("loss"))
def test_loss_matches_functional(name, shape):
    n, c = shape
    torch.manual_seed(n + c)
    for make, reference in LOSS_CASES[name]:
        prediction = torch.randn(n, c, dtype=torch.float64) * 3
        report = check_loss(make(), prediction, _target(name, n, c), reference)
        assert report.passed(), report.errors


@pytest.mark.parametrize("scale", [1000.0, -1000.0, 1e4])
def test_cross_entropy_is_stable_for_extreme_logits(scale):
    logits = torch.tensor([[scale, 0.0, -scale], [0.0, scale, 1.0]], dtype=torch.float64)
    labels = torch.tensor([2, 1])
    report = check_loss(nn.CrossEntropyLoss(), logits, labels, F.cross_entropy)
    assert report.passed(), report.errors
    loss = nn.CrossEntropyLoss()
    assert torch.isfinite(loss(logits, labels)) and torch.isfinite(loss.backward()).all()


def test_mse_gradient_sign_and_scale():
    loss = nn.MSELoss()
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    loss(x, torch.zeros(1, 2, dtype=torch.float64))
    assert torch.equal(loss.backward(), torch.tensor([[1.0, 3.0]], dtype=torch.float64))  # 2x/2


def test_loss_targets_from_labels():
    labels = torch.tensor([0, 1, 1])
    onehot = nn.MSELoss().targets(labels, 2, torch.float32)
    signed = nn.MSELoss(targets="signed").targets(labels, 2, torch.float32)
    assert onehot.tolist() == [[1, 0], [0, 1], [0, 1]]
    assert signed.tolist() == [[1, -1], [-1, 1], [-1, 1]]
    assert nn.CrossEntropyLoss().targets(labels, 2, torch.float32) is labels


def test_cross_entropy_rejects_float_labels():
    with pytest.raises(ValueError, match="int64 class labels"):
        nn.CrossEntropyLoss()(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))


DIGITS_CNN = {
    "seed": 0,
    "data": {"type": "digits"},
    "model": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
              "batch_norm2d", "relu", {"type": "max_pool2d", "kernel_size": 2},
              {"type": "avg_pool2d", "kernel_size": [2, 1]}, "flatten", "layer_norm",
              {"type": "bilinear", "out_features": 10}],
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"epochs": 1, "batch_size": 32},
}


def test_gradcheck_command_covers_a_convnet(tmp_path):
    """Real activations after ReLU tie whole max-pooling windows at zero; the command still
    checks every module against autograd there, and central differences off the ties."""
    from helpers import invoke, write_config

    result = invoke("gradcheck", write_config(tmp_path, DIGITS_CNN))
    assert result.exit_code == 0, result.output
    for row in ("[0] Conv2d", "[1] BatchNorm2d", "[3] MaxPool2d", "[4] AvgPool2d",
                "[5] Flatten", "[6] LayerNorm", "[7] Bilinear", "loss CrossEntropyLoss"):
        assert row in result.stdout


def test_list_shows_the_new_layers_with_their_options():
    from helpers import invoke

    text = invoke("list", "layer").stdout
    conv = text[text.index("  conv2d"):text.index("  dropout")]
    assert "kernel_size: int | tuple[int, int] (required)" in conv
    # inferred from the incoming shape: listed as such, never required
    assert "in_channels: int (inferred: the input's axis 1 (N is 0);" in conv
    assert "in_channels: int (required)" not in conv
    for name in ("max_pool2d", "avg_pool2d", "flatten", "batch_norm1d", "batch_norm2d",
                 "layer_norm", "bilinear"):
        assert f"\n  {name} " in text
    for inferred in ("num_features", "normalized_shape"):  # listed as inferred, not required
        assert f"{inferred}: int (inferred: " in text and f"{inferred}: int (req" not in text


@pytest.mark.parametrize("name", registry.names("layer"))
def test_declared_output_shape_is_the_real_one(name):
    """Every built-in layer says what shape it outputs (the builder trusts it)."""
    gen = torch.Generator().manual_seed(0)
    for module, x_shape in layer_cases(name, 3, 5):
        x = make_input(x_shape, 3, gen)
        out = module.forward(x)
        assert module.output_shape(tuple(x.shape[1:])) == tuple(out.shape[1:]), module


def test_gradcheck_command_says_when_a_module_has_no_twin(tmp_path, monkeypatch):
    from helpers import TINY, invoke, write_config

    (tmp_path / "swish_plugin.py").write_text(
        "import torch\nfrom minidl_cli.nn import Module\nfrom minidl_cli.registry import register\n"
        "@register('layer', 'swish')\nclass Swish(Module):\n"
        "    output_shape = staticmethod(lambda shape: shape)\n"
        "    def forward(self, x):\n        self._x, self._s = x, torch.sigmoid(x)\n"
        "        return x * self._s\n"
        "    def backward(self, g):\n        s = self._s\n"
        "        return g * (s + self._x * s * (1 - s))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = [{"type": "linear", "out_features": 8}, "swish", {"type": "linear", "out_features": 2}]
    result = invoke("gradcheck", write_config(tmp_path, {**TINY, "model": model,
                                                         "plugins": ["swish_plugin"]}))
    assert result.exit_code == 0, result.output
    swish_row = next(line for line in result.stdout.splitlines() if "[1] Swish" in line)
    assert "no torch.nn twin" in swish_row and "output unchecked" in swish_row
    linear_row = next(line for line in result.stdout.splitlines() if "[0] Linear" in line)
    assert "twin" not in linear_row


FAN_OUT = [  # nested residuals, a concat of a residual, a repeat of 3
    {"type": "linear", "out_features": 6},
    {"type": "residual", "body": [{"type": "residual", "body": [
        {"type": "linear", "out_features": 6}, "tanh"]}, {"type": "linear", "out_features": 6}]},
    {"type": "concat", "branches": [[{"type": "residual", "body": ["tanh"]}],
                                    [{"type": "linear", "out_features": 3}]]},
    {"type": "repeat", "times": 3, "body": [{"type": "residual", "body": [
        {"type": "linear", "out_features": 9}, "elu"]}]},
    {"type": "linear", "out_features": 2},
]


def test_gradcheck_command_covers_blocks_where_tensors_fan_out(tmp_path):
    from helpers import TINY, invoke, write_config

    result = invoke("gradcheck", write_config(tmp_path, {**TINY, "model": FAN_OUT}))
    assert result.exit_code == 0, result.output
    for row in ("[1] Residual", "[2] Concat", "[3] Repeat", "[4] Linear"):
        assert row in result.stdout
    assert "twin" not in result.stdout  # each block checked against its torch.nn twin


@pytest.mark.parametrize("name", registry.names("layer"))
def test_backward_params_adds_what_backward_adds(name):
    """A network's first layer skips dL/dx (its input is data); its parameter gradients
    must be backward's, whatever the layer does to get them."""
    gen = torch.Generator().manual_seed(1)
    for module, x_shape in layer_cases(name, 4, 5):
        x = make_input(x_shape, 4, gen)
        torch.manual_seed(2)  # the same dropout mask in both forwards
        g = torch.randn_like(module(x))
        module.backward(g)
        expected = {k: p.grad.clone() for k, p in module.named_parameters()}
        module.zero_grad()
        torch.manual_seed(2)
        module(x)
        assert module.backward_params(g) is None
        for k, p in module.named_parameters():
            assert torch.equal(p.grad, expected[k]), (module, k)


def test_a_network_skips_only_its_first_layers_input_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2),
                        nn.Flatten(), nn.Linear(36, 2)).to(dtype=torch.float64)
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    g = torch.randn(5, 2, dtype=torch.float64)
    net(x)
    net.backward(g)
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net(x)
    net.backward_params(g)
    assert all(torch.equal(p.grad, e) for p, e in zip(net.parameters(), expected, strict=True))
