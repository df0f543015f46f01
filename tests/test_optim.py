"""Optimizers and schedules against torch.optim, step for step, in float64."""

import math

import pytest
import torch

from minidl_cli import nn, optim, registry

STEPS = 30


def _twin_problem(seed=0):
    """The same tiny regression in minidl and torch.nn, identical weights."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype=torch.float64)
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 2)).double()
    tnet.load_state_dict(net.state_dict())
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    return net, tnet, x, y


def _run_both(make_ours, make_theirs, steps=STEPS, schedule=None):
    net, tnet, x, y = _twin_problem()
    opt, topt = make_ours(net.parameters()), make_theirs(tnet.parameters())
    sched = schedule[0](opt) if schedule else None
    tsched = schedule[1](topt) if schedule else None
    loss_fn = nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x), y)
        net.backward(loss_fn.backward())
        opt.step()
        topt.zero_grad()
        torch.nn.functional.mse_loss(tnet(x), y).backward()
        topt.step()
        if sched:
            sched.step()
            tsched.step()
            assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)
    worst = 0.0
    for (name, p), (tname, tp) in zip(net.named_parameters(), tnet.named_parameters(),
                                      strict=True):
        assert name == tname
        worst = max(worst, ((p.data - tp.data).abs().max() / tp.data.abs().max()).item())
    return worst


SGD_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=str)
def test_sgd_matches_torch(options):
    worst = _run_both(lambda p: optim.SGD(p, **options),
                      lambda p: torch.optim.SGD(p, **options, foreach=False))
    assert worst < 1e-10


ADAM_OPTIONS = [
    dict(lr=0.01),
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(lr=0.003, eps=1e-6, weight_decay=0.05),
]


@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=str)
def test_adam_matches_torch(options):
    worst = _run_both(lambda p: optim.Adam(p, **options),
                      lambda p: torch.optim.Adam(p, **options, foreach=False))
    assert worst < 1e-10


def test_every_optimizer_and_scheduler_is_covered():
    assert set(registry.names("optimizer")) == {"sgd", "adam"}
    assert set(registry.names("scheduler")) == {"step", "cosine"}


@pytest.mark.parametrize("name,ours,theirs", [
    ("step", lambda o: optim.StepLR(o, step_size=7, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    ("cosine", lambda o: optim.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001)),
])
def test_schedules_match_torch(name, ours, theirs):
    worst = _run_both(lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False),
                      schedule=(ours, theirs))
    assert worst < 1e-10


def test_cosine_reaches_eta_min_at_t_max():
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5)
    sched = optim.CosineAnnealingLR(opt, T_max=10)
    for _ in range(10):
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-15)
    assert sched.lr_at(5) == pytest.approx(0.25)
    assert math.isclose(sched.lr_at(0), 0.5)


@pytest.mark.parametrize("make,message", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), "Invalid betas"),
    (lambda p: optim.Adam(p, eps=-1), "Invalid epsilon"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
])
def test_optimizer_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make(nn.Linear(2, 2).parameters())


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
                                  lambda p: optim.Adam(p, lr=0.01)])
def test_optimizer_state_round_trip_continues_identically(make):
    net, _, x, y = _twin_problem()
    loss_fn = nn.MSELoss()

    def steps(net, opt, n):
        for _ in range(n):
            opt.zero_grad()
            loss_fn(net(x), y)
            net.backward(loss_fn.backward())
            opt.step()

    opt = make(net.parameters())
    steps(net, opt, 5)
    saved_model = {k: v.clone() for k, v in net.state_dict().items()}
    saved_opt = opt.state_dict()
    buffer = torch.save(saved_opt, b := __import__("io").BytesIO()) or b
    buffer.seek(0)
    steps(net, opt, 5)

    twin, *_ = _twin_problem()
    twin.load_state_dict(saved_model)
    opt2 = make(twin.parameters())
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    steps(twin, opt2, 5)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p.data, q.data)


def test_packed_buffers_are_the_parameters_until_replaced():
    """The optimizer packs data and grads into two flat buffers (one op per update); when
    Module.to() replaces the tensors it updates the new ones, one tensor per parameter."""
    worst = _run_both(lambda p: optim.SGD(p, lr=0.05, weight_decay=0.01),  # the flat path
                      lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.01, foreach=False))
    assert worst < 1e-10
    net, _, x, y = _twin_problem()
    opt = optim.SGD(net.parameters(), lr=0.1)
    assert opt.packed.intact and net[0].weight.data.untyped_storage().data_ptr() == \
        opt.packed.data.untyped_storage().data_ptr()
    net.to(dtype=torch.float32)
    assert not opt.packed.intact
    before = [p.data.clone() for p in net.parameters()]
    loss_fn = nn.MSELoss()
    loss_fn(net(x.float()), y.float())
    net.backward(loss_fn.backward())
    opt.step()
    assert all(not torch.equal(p.data, b) for p, b in zip(net.parameters(), before, strict=True))
    opt.zero_grad()
    assert all(p.grad.abs().sum() == 0 for p in net.parameters())


def _storage(t):
    return t.untyped_storage().data_ptr()


@pytest.mark.parametrize("make, names", [
    (lambda p: optim.SGD(p, lr=0.05, momentum=0.9), ["momentum_buffer"]),
    (lambda p: optim.Adam(p, lr=0.01), ["exp_avg", "exp_avg_sq"]),
])
def test_optimizer_state_is_packed_and_stays_packed_after_loading(make, names):
    """Per-parameter state tensors are views of one flat buffer per name, as the weights are
    (so a step is a few ops on flat tensors), before and after load_state_dict."""
    net, _, x, y = _twin_problem()
    opt = make(net.parameters())
    loss_fn = nn.MSELoss()
    loss_fn(net(x), y)
    net.backward(loss_fn.backward())
    opt.step()
    for name in names:
        assert len({_storage(opt.state[i][name]) for i in opt.state}) == 1
        assert opt.state[0][name].shape == net[0].weight.shape
    assert len(opt.tensors(*names)[0]) == 1  # the flat path

    twin, *_ = _twin_problem()
    opt2 = make(twin.parameters())
    opt2.load_state_dict(opt.state_dict())
    for name in names:
        assert len({_storage(opt2.state[i][name]) for i in opt2.state}) == 1
        assert _storage(opt2.state[0][name]) != _storage(opt.state[0][name])  # copied in
        for i in opt.state:
            assert torch.equal(opt2.state[i][name], opt.state[i][name])
    assert len(opt2.tensors(*names)[0]) == 1
