"""Module API: accumulation, zero_grad, modes, state dicts, torch.nn interoperability, repr."""

import pytest
import torch

from minidl_cli import nn


def reference_net():
    return nn.Sequential(nn.Linear(2, 25), nn.ReLU(), nn.Linear(25, 25), nn.ReLU(),
                         nn.Linear(25, 25), nn.ReLU(), nn.Linear(25, 2), nn.Tanh())


def test_backward_accumulates_and_zero_grad_clears():
    torch.manual_seed(0)
    net = reference_net()
    x, g = torch.randn(10, 2), torch.randn(10, 2)
    net(x)
    net.backward(g)
    first = [p.grad.clone() for p in net.parameters()]
    net(x)
    net.backward(g)
    for p, once in zip(net.parameters(), first, strict=True):
        torch.testing.assert_close(p.grad, 2 * once)
    assert any(once.abs().sum() > 0 for once in first)
    net.zero_grad()
    assert all(p.grad.abs().sum() == 0 for p in net.parameters())


def test_parameters_names_and_course_api():
    net = reference_net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
                     "6.weight", "6.bias"]
    assert net[0].weight.shape == (25, 2)  # (out_features, in_features) as torch.nn
    pairs = net.param()
    assert len(pairs) == 8 and all(d.shape == g.shape for d, g in pairs)
    assert pairs[0][0] is net[0].weight.data and pairs[0][1] is net[0].weight.grad


def test_xavier_uniform_init_bounds_and_zero_bias():
    torch.manual_seed(0)
    layer = nn.Linear(200, 300)
    bound = (6 / 500) ** 0.5
    assert layer.weight.data.abs().max() <= bound
    assert layer.weight.data.abs().max() > 0.95 * bound
    assert torch.equal(layer.bias.data, torch.zeros(300))


@pytest.mark.parametrize("init,std", [("xavier_normal", (2 / 700) ** 0.5),
                                      ("kaiming_normal", (2 / 400) ** 0.5),
                                      ("kaiming_uniform", (6 / 400) ** 0.5 / 3 ** 0.5)])
def test_other_inits_have_their_standard_deviation(init, std):
    torch.manual_seed(0)
    weight = nn.Linear(400, 300, init=init).weight.data
    assert abs(weight.std().item() - std) < 0.05 * std


def test_unknown_init_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown init 'glorot'"):
        nn.Linear(2, 3, init="glorot")


def test_train_eval_propagate_and_dropout_obeys_mode():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    x = torch.ones(1000, 4)
    net.eval()
    assert not net[1].training
    assert torch.equal(net[1](x), x)
    net.train()
    out = net[1](x)
    assert net[1].training
    assert set(out.unique().tolist()) == {0.0, 2.0}  # inverted dropout scales kept units by 2
    assert 0.4 < (out == 0).float().mean() < 0.6


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = reference_net(), reference_net()
    assert not torch.equal(a[0].weight.data, b[0].weight.data)
    b.load_state_dict(a.state_dict())
    x = torch.randn(7, 2)
    assert torch.equal(a(x), b(x))


def test_state_dict_loads_into_torch_sequential():
    torch.manual_seed(0)
    net = reference_net()
    tnet = torch.nn.Sequential(
        torch.nn.Linear(2, 25), torch.nn.ReLU(), torch.nn.Linear(25, 25), torch.nn.ReLU(),
        torch.nn.Linear(25, 25), torch.nn.ReLU(), torch.nn.Linear(25, 2), torch.nn.Tanh())
    tnet.load_state_dict(net.state_dict())  # strict: same keys and shapes
    x = torch.randn(50, 2)
    with torch.no_grad():
        torch.testing.assert_close(tnet(x), net(x), rtol=0, atol=0)
    back = reference_net()
    back.load_state_dict(tnet.state_dict())
    assert torch.equal(back(x), net(x))


def test_load_state_dict_errors_name_the_problem():
    net = reference_net()
    state = net.state_dict()
    with pytest.raises(ValueError, match="missing keys \\['6.bias'\\]"):
        net.load_state_dict({k: v for k, v in state.items() if k != "6.bias"})
    with pytest.raises(ValueError, match="'0.weight' has shape \\(3, 2\\)"):
        net.load_state_dict({**state, "0.weight": torch.zeros(3, 2)})


def test_repr_reads_like_torch():
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2), nn.Dropout(0.1)))
    assert text == ("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n"
                    "  (1): LeakyReLU(negative_slope=0.2)\n  (2): Dropout(p=0.1)\n)")


def test_to_casts_parameters_and_gradients():
    net = reference_net().to(dtype=torch.float64)
    assert all(p.data.dtype == p.grad.dtype == torch.float64 for p in net.parameters())


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="Sequential takes Modules"):
        nn.Sequential(nn.ReLU(), torch.nn.ReLU())


def test_linear_bias_gradient_follows_batch_size_dtype_and_device_changes():
    """Linear keeps (N,) ones between steps for the bias gradient; a new N (the last short
    batch of an epoch), a new dtype after Module.to() or a different device make new ones."""
    layer = nn.Linear(3, 4)
    for n, dtype in [(5, torch.float32), (2, torch.float32), (5, torch.float32),
                     (2, torch.float64), (7, torch.float64)]:
        layer.to(dtype=dtype)
        layer.zero_grad()
        x, g = torch.randn(n, 3, dtype=dtype), torch.randn(n, 4, dtype=dtype)
        layer.forward(x)
        layer.backward(g)
        assert layer.bias.grad.dtype == dtype
        torch.testing.assert_close(layer.bias.grad, g.sum(0))
        torch.testing.assert_close(layer.weight.grad, g.t() @ x)
    layer.backward(g)  # accumulates, with the kept ones
    torch.testing.assert_close(layer.bias.grad, 2 * g.sum(0))


class Counter(nn.Module):
    """A layer with a learned scale and two buffers, as BatchNorm keeps them."""

    def __init__(self, n):
        self.weight = nn.Parameter(torch.ones(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        self.running_mean = 0.5 * self.running_mean + 0.5 * x.mean(0)
        self.num_batches_tracked += 1
        return x * self.weight.data


class TorchCounter(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))


def test_buffers_are_state_but_not_parameters():
    net = nn.Sequential(nn.Linear(3, 4), Counter(4))
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "1.weight"]
    assert [n for n, _ in net.named_buffers()] == ["1.running_mean", "1.num_batches_tracked"]
    assert all(p.data is not b for p in net.parameters() for b in net.buffers())
    torch_net = torch.nn.Sequential(torch.nn.Linear(3, 4), TorchCounter(4))
    assert list(net.state_dict()) == list(torch_net.state_dict())  # same keys, same order
    net(torch.randn(5, 3))
    torch_net.load_state_dict(net.state_dict())
    assert torch_net[1].num_batches_tracked.item() == 1
    torch.testing.assert_close(torch_net[1].running_mean, net[1].running_mean, rtol=0, atol=0)


def test_load_state_dict_fills_buffers_and_names_missing_ones():
    a, b = nn.Sequential(Counter(2)), nn.Sequential(Counter(2))
    a(torch.tensor([[1.0, 3.0]]))
    b.load_state_dict(a.state_dict())
    assert b[0].running_mean.tolist() == [0.5, 1.5] and b[0].num_batches_tracked.item() == 1
    b[0].running_mean += 1  # a copy, not a shared tensor
    assert a[0].running_mean.tolist() == [0.5, 1.5]
    state = {k: v for k, v in a.state_dict().items() if k != "0.running_mean"}
    with pytest.raises(ValueError, match=r"missing keys \['0.running_mean'\]"):
        b.load_state_dict(state)


def test_to_casts_floating_buffers_and_keeps_integer_ones():
    net = nn.Sequential(Counter(3)).to(dtype=torch.float64)
    assert net[0].running_mean.dtype == torch.float64
    assert net[0].num_batches_tracked.dtype == torch.int64
    assert net.state_dict()["0.running_mean"].dtype == torch.float64
    net.load_state_dict({"0.weight": torch.ones(3), "0.running_mean": torch.ones(3),
                         "0.num_batches_tracked": torch.tensor(7)})
    assert net[0].running_mean.dtype == torch.float64 and net[0].num_batches_tracked.item() == 7


def convnet():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 6, (2, 3), stride=(1, 2), bias=False),
                         nn.AvgPool2d((2, 1), stride=1), nn.Flatten(), nn.LayerNorm(12),
                         nn.Linear(12, 5), nn.BatchNorm1d(5), nn.Bilinear(5, 3))


class TorchSelfBilinear(torch.nn.Bilinear):
    def forward(self, x):
        return super().forward(x, x)


def torch_convnet():
    t = torch.nn
    return t.Sequential(t.Conv2d(1, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(), t.MaxPool2d(2),
                        t.Conv2d(4, 6, (2, 3), stride=(1, 2), bias=False),
                        t.AvgPool2d((2, 1), stride=1), t.Flatten(), t.LayerNorm(12),
                        t.Linear(12, 5), t.BatchNorm1d(5), TorchSelfBilinear(5, 5, 3))


def test_convnet_state_dict_loads_into_torch_sequential_in_train_and_eval_mode():
    torch.manual_seed(0)
    net, tnet = convnet(), torch_convnet()
    assert list(net.state_dict()) == list(tnet.state_dict())
    tnet.load_state_dict(net.state_dict())  # strict: same keys and shapes, buffers included
    with torch.no_grad():
        for _ in range(3):  # training updates the running statistics alike
            x = torch.randn(8, 1, 8, 8)
            torch.testing.assert_close(net(x), tnet(x))
        torch.testing.assert_close(net[1].running_var, tnet[1].running_var)
        assert net[9].num_batches_tracked.item() == 3
        net.eval(), tnet.eval()
        x = torch.randn(5, 1, 8, 8)
        torch.testing.assert_close(net(x), tnet(x))
    assert all(p.data is not b for p in net.parameters() for b in net.buffers())
    assert len(net.parameters()) == len(list(tnet.parameters()))  # buffers are not parameters


@pytest.mark.parametrize("make,make_torch", [
    (lambda: nn.Conv2d(3, 8, (3, 5)), lambda: torch.nn.Conv2d(3, 8, (3, 5))),
    (lambda: nn.Conv2d(4, 6, 3, groups=2), lambda: torch.nn.Conv2d(4, 6, 3, groups=2)),
    (lambda: nn.Bilinear(6, 4), lambda: torch.nn.Bilinear(6, 6, 4)),
    (lambda: nn.BatchNorm2d(5), lambda: torch.nn.BatchNorm2d(5)),
    (lambda: nn.LayerNorm(7, bias=False), lambda: torch.nn.LayerNorm(7, bias=False)),
])
def test_new_layers_initialise_as_torch_nn_from_the_global_rng(make, make_torch):
    torch.manual_seed(3)
    ours = make().state_dict()
    after = torch.rand(2)
    torch.manual_seed(3)
    theirs = make_torch().state_dict()
    assert torch.equal(after, torch.rand(2))  # the same number of draws
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_batch_norm_running_statistics_follow_torch_and_serve_eval_mode():
    bn, tbn = nn.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None)
    for _ in range(4):
        x = torch.randn(6, 3) * 3 + 1
        bn(x), tbn(x)
    torch.testing.assert_close(bn.running_var, tbn.running_var)  # unbiased, cumulative
    torch.testing.assert_close(bn.running_mean, tbn.running_mean)
    bn.eval()
    x = torch.randn(1, 3)  # a batch of one is fine in eval mode
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(bn(x), expected)
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn.train()(x)


def test_new_layers_repr_like_torch():
    assert repr(nn.Conv2d(1, 16, 3, bias=False)) == (
        "Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), bias=False)")
    assert repr(nn.BatchNorm2d(4)) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True)"
    assert repr(nn.Flatten()) == repr(torch.nn.Flatten())
    args = dict(padding=1, dilation=2, groups=2)
    assert repr(nn.Conv2d(4, 6, 3, **args)) == repr(torch.nn.Conv2d(4, 6, 3, **args))


def test_conv2d_by_im2col_teaches_what_conv2d_computes():
    """The docstring's im2col version (patches times W) is the convolution training runs."""
    from minidl_cli.nn.conv import conv2d_by_im2col

    x, w, b = torch.randn(3, 2, 9, 8), torch.randn(5, 2, 3, 2), torch.randn(5)
    torch.testing.assert_close(conv2d_by_im2col(x, w, b, stride=(2, 1), padding=1),
                               torch.nn.functional.conv2d(x, w, b, (2, 1), 1))


def test_accumulating_with_plus_equals_keeps_the_optimizers_packed_gradients():
    """`p.grad += g` assigns the same tensor back to the Parameter: it is still a view of the
    optimizer's packed buffer, so the fast path stays on; a new tensor turns it off."""
    from minidl_cli import optim

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(16, 2))
    opt = optim.SGD(net.parameters(), lr=0.1)
    assert opt.packed is not None and opt.packed.intact
    net.backward(torch.ones(3, 2) + 0 * net(torch.randn(3, 1, 4, 6)))  # conv bias: +=
    assert opt.packed.intact
    bias = net[0].bias
    assert bias.grad.abs().sum() > 0 and opt.packed.grad.abs().sum() > 0
    bias.grad = bias.grad.clone()
    assert not opt.packed.intact


def test_to_accepts_a_positional_dtype_as_torch_nn_does():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).to(torch.float64)
    assert net[0].weight.data.dtype == torch.float64
    assert net[0].weight.grad.dtype == torch.float64
    state = net.state_dict()
    assert state["1.running_var"].dtype == torch.float64
    assert state["1.num_batches_tracked"].dtype == torch.int64
    net.to("cpu", torch.float32)
    assert net[0].weight.data.dtype == torch.float32


class Branches(nn.Module):
    """Layers kept in a list and a tuple, as a block keeps its branches."""

    def __init__(self):
        self.branches = [nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))]
        self.pair = (nn.Dropout(0.5), nn.Linear(3, 1, bias=False))
        self.sizes = [2, 4]  # a list of other things is not a module


def test_modules_in_lists_and_tuples_are_walked_like_attributes():
    block = Branches()
    assert [n for n, _ in block.named_children()] == ["branches.0", "branches.1", "pair.0",
                                                      "pair.1"]
    assert list(block.state_dict()) == [
        "branches.0.weight", "branches.0.bias", "branches.1.0.weight", "branches.1.0.bias",
        "branches.1.1.weight", "branches.1.1.bias", "branches.1.1.running_mean",
        "branches.1.1.running_var", "branches.1.1.num_batches_tracked", "pair.1.weight"]
    assert len(block.parameters()) == 7 and len(block.buffers()) == 3
    block.eval()
    assert not block.pair[0].training and not block.branches[1][1].training
    block.to(torch.float64)
    assert block.branches[1][0].weight.grad.dtype == torch.float64
    assert block.branches[1][1].running_mean.dtype == torch.float64
    state = {k: torch.full_like(v, 3) for k, v in block.state_dict().items()}
    block.load_state_dict(state)
    assert (block.pair[1].weight.data == 3).all()
    assert [n for n, _ in block.named_modules()][:4] == ["", "branches.0", "branches.1",
                                                         "branches.1.0"]


def test_to_torch_loads_the_twins_and_names_a_module_without_one():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh()).to(torch.float64)
    twin = net.to_torch()
    assert isinstance(twin, torch.nn.Sequential) and twin.training
    assert next(twin.parameters()).dtype == torch.float64
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"^Swish \(module 1\) has no torch.nn twin"):
        nn.Sequential(nn.Linear(3, 4), Swish()).to_torch()


@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_weight_gradient_summed_over_batch_slices(monkeypatch, groups):
    """A batch too large for one slice is summed slice by slice, to the same gradient."""
    from minidl_cli.gradcheck import check_module
    from minidl_cli.nn import conv

    monkeypatch.setattr(conv, "SLICE_VALUES", 2 * 4 * 7 * 6)  # two images a slice
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, 3, stride=2, groups=groups).to(dtype=torch.float64)
    report = check_module(layer, torch.randn(5, 4, 7, 6, dtype=torch.float64))
    assert report.passed() and "weight" in report.errors, report.errors


def test_forward_in_slices_equals_one_call_and_bounds_the_rows_per_slice():
    """Evaluation runs a split a slice at a time (a layer keeps its backward's tensors, so
    one call on a whole split can hold GBs); the outputs are the one call's."""
    from minidl_cli.nn.module import forward_in_slices

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(torch.float64)
    x = torch.randn(103, 6, dtype=torch.float64)
    seen = []
    original = net.forward
    net.forward = lambda rows: seen.append(len(rows)) or original(rows)
    assert torch.equal(forward_in_slices(net, x, values=60), original(x))
    assert max(seen) == 10 and sum(seen[1:]) == 103  # 60 values / 6 per row; the probe first
    seen.clear()
    assert torch.equal(forward_in_slices(net, x), original(x)) and seen == [1, 103]
    seen.clear()  # an output size given: no one-row call to measure it
    assert torch.equal(forward_in_slices(net, x, row_outputs=3), original(x)) and seen == [103]


def test_linear_torch_default_init_draws_what_torch_nn_linear_draws():
    torch.manual_seed(3)
    ours = nn.Linear(7, 4, init="torch_default")
    torch.manual_seed(3)
    theirs = torch.nn.Linear(7, 4)
    assert torch.equal(ours.weight.data, theirs.weight.data)
    assert torch.equal(ours.bias.data, theirs.bias.data)
