"""Optimizers and schedules against torch.optim, step for step, in float64."""

import csv
import math

import pytest
import torch

from minidl_cli import nn, optim, registry
from minidl_cli.gradcheck import OPTIMIZER_STEPS as STEPS
from minidl_cli.gradcheck import check_optimizer
from tests.helpers import TINY, invoke, train_tiny, write_config


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


OPTIONS = {  # every option of every optimizer, alone and combined
    "sgd": [
        dict(lr=0.1),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.3),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, momentum=0.5, weight_decay=0.01),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
    ],
    "adam": [
        dict(lr=0.01),
        dict(lr=0.01, betas=(0.8, 0.99)),
        dict(lr=0.003, eps=1e-6, weight_decay=0.05),
        dict(lr=0.01, amsgrad=True),
        dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True),
    ],
    "adamw": [
        dict(),
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.3, betas=(0.8, 0.99)),
        dict(lr=0.01, weight_decay=0),
        dict(lr=0.01, eps=1e-4, amsgrad=True),
        dict(lr=0.02, weight_decay=0.2, betas=(0.5, 0.9), amsgrad=True),
    ],
    "rmsprop": [
        dict(),
        dict(lr=0.003, alpha=0.9),
        dict(lr=0.003, eps=1e-3, weight_decay=0.05),
        dict(lr=0.003, momentum=0.9),
        dict(lr=0.003, centered=True),
        dict(lr=0.003, momentum=0.5, centered=True),
        dict(lr=0.001, alpha=0.5, eps=1e-6, weight_decay=0.1, momentum=0.8, centered=True),
    ],
    "adagrad": [
        dict(),
        dict(lr=0.1, lr_decay=0.05),
        dict(lr=0.1, weight_decay=0.05),
        dict(lr=0.1, initial_accumulator_value=0.5),
        dict(lr=0.1, eps=1e-3),
        dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1, eps=1e-6),
    ],
}
CASES = [(name, options) for name, options_list in OPTIONS.items() for options in options_list]


def test_every_optimizer_and_scheduler_is_covered():
    assert set(registry.names("optimizer")) == set(OPTIONS)
    assert set(registry.names("scheduler")) == {"step", "cosine"}


@pytest.mark.parametrize("name,options", CASES, ids=lambda c: str(c))
def test_optimizer_matches_torch_step_for_step(name, options):
    report = check_optimizer(lambda p: registry.build("optimizer", name, p, **options))
    assert report.passed(), report.errors
    assert set(report.errors) == {"0.weight", "0.bias", "2.weight", "2.bias"}


@pytest.mark.parametrize("ours,theirs", [
    (dict(lr=0.01, amsgrad=True), dict(lr=0.01)),
    (dict(lr=0.01, weight_decay=0.3), dict(lr=0.01, weight_decay=0.3)),  # AdamW vs Adam
])
def test_the_check_tells_the_options_apart(ours, theirs):
    """The twin problem is one where amsgrad and decoupled weight decay change the weights."""
    report = check_optimizer(lambda p: optim.AdamW(p, **ours),
                             lambda p: torch.optim.Adam(p, **theirs, foreach=False))
    assert report.max_error > 1e-6


def test_optimizers_are_registered_with_torch_names():
    for alias, cls in [("SGD", optim.SGD), ("Adam", optim.Adam), ("AdamW", optim.AdamW),
                       ("RMSprop", optim.RMSprop), ("Adagrad", optim.Adagrad)]:
        assert registry.lookup("optimizer", alias).target is cls


@pytest.mark.parametrize("name,ours,theirs", [
    ("step", lambda o: optim.StepLR(o, step_size=7, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    ("cosine", lambda o: optim.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001)),
])
def test_schedules_match_torch(name, ours, theirs):
    report = check_optimizer(lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                             schedules=(ours, theirs))
    assert report.passed(), report.errors
    assert "lr" in report.errors


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
    (lambda p: optim.AdamW(p, weight_decay=-0.1), "Invalid weight_decay value"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "Invalid betas"),
    (lambda p: optim.RMSprop(p, alpha=-0.5), "Invalid alpha value: -0.5; alpha must be"),
    (lambda p: optim.RMSprop(p, momentum=-1), "Invalid momentum value"),
    (lambda p: optim.RMSprop(p, lr=float("nan")), "Invalid learning rate"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), "Invalid lr_decay value"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=-1),
     "Invalid initial_accumulator_value value"),
    (lambda p: optim.Adagrad(p, eps=-1e-10), "Invalid epsilon value"),
])
def test_optimizer_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make(nn.Linear(2, 2).parameters())


STATEFUL = [  # (factory, per-parameter state tensors)
    (lambda p: optim.SGD(p, lr=0.05, momentum=0.9), ["momentum_buffer"]),
    (lambda p: optim.Adam(p, lr=0.01), ["exp_avg", "exp_avg_sq"]),
    (lambda p: optim.AdamW(p, lr=0.01, amsgrad=True), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    (lambda p: optim.RMSprop(p, lr=0.003, momentum=0.9, centered=True),
     ["square_avg", "momentum_buffer", "grad_avg"]),
    (lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), ["sum"]),
]
STATEFUL_IDS = ["sgd", "adam", "adamw", "rmsprop", "adagrad"]


@pytest.mark.parametrize("make, names", STATEFUL, ids=STATEFUL_IDS)
def test_optimizer_state_round_trip_continues_identically(make, names):
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
    assert check_optimizer(lambda p: optim.SGD(p, lr=0.05, weight_decay=0.01)).passed()
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


@pytest.mark.parametrize("make, names", STATEFUL, ids=STATEFUL_IDS)
def test_unpacked_parameters_match_torch_too(make, names):
    """Parameters the optimizer cannot pack (here: replaced after packing) take the
    one-tensor-per-parameter path, with the same update."""
    def make_unpacked(params):
        optimizer = make(params)
        for p in params:
            p.data = p.data.clone()
        assert not optimizer.packed.intact
        return optimizer

    report = check_optimizer(make_unpacked)
    assert report.passed(), report.errors


@pytest.mark.parametrize("make, names", STATEFUL, ids=STATEFUL_IDS)
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


@pytest.mark.parametrize("optimizer,loss,state_names", [
    ({"type": "RMSprop", "lr": 0.01, "momentum": 0.5, "centered": True}, {"type": "l1"},
     {"step", "square_avg", "momentum_buffer", "grad_avg"}),
    ({"type": "adamw", "lr": 0.01, "amsgrad": True}, {"type": "HuberLoss", "delta": 0.5},
     {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    ({"type": "Adagrad", "lr": 0.1, "lr_decay": 0.01}, {"type": "smooth_l1", "targets": "signed"},
     {"step", "sum"}),
], ids=["rmsprop", "adamw", "adagrad"])
def test_a_config_with_the_new_optimizers_and_losses_trains_and_resumes(
        tmp_path, optimizer, loss, state_names):
    run = train_tiny(tmp_path, config={**TINY, "optimizer": optimizer, "loss": loss})
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["optimizer"]["state"][0]) == state_names
    assert state["optimizer"]["state"][0]["step"] == 3 * 200 // 50
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 3 and all(math.isfinite(float(r["train_loss"])) for r in rows)
    result = invoke("train", "--resume", run, "train.epochs=4", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == 4


def test_list_and_gradcheck_show_the_new_optimizers(tmp_path):
    listing = invoke("list").stdout
    assert "\nlosses:\n" in listing and "\noptimizers:\n" in listing
    for text in ("rmsprop", "adamw", "adagrad", "l1", "huber", "smooth_l1",
                 "initial_accumulator_value", "centered", "amsgrad", "delta"):
        assert text in listing
    config = {**TINY, "optimizer": {"type": "rmsprop", "momentum": 0.9}, "loss": "huber"}
    result = invoke("gradcheck", write_config(tmp_path, config))
    assert result.exit_code == 0, result.output
    assert "optimizer RMSprop vs torch.optim" in result.stdout
    assert "loss HuberLoss" in result.stdout


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, 1e3])  # clips hard, clips, leaves alone
def test_clip_grad_norm_matches_torch(max_norm):
    """The global 2-norm over every gradient, and all of them scaled by one factor, as
    torch.nn.utils.clip_grad_norm_ (float64)."""
    from minidl_cli.optim import clip_grad_norm_

    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,), (2, 2, 5)]
    grads = [torch.randn(s, dtype=torch.float64, generator=gen) for s in shapes]
    ours = [nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p, q, g in zip(ours, theirs, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    norm = clip_grad_norm_(ours, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert abs(norm.item() - expected.item()) <= 1e-12 * expected.item()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-12, atol=0)
    clipped = torch.stack([p.grad.norm() for p in ours]).norm().item()
    assert clipped == pytest.approx(min(max_norm, norm.item()), rel=1e-5)


def test_training_with_clip_grad_norm_clips_every_step(tmp_path):
    """train.clip_grad_norm reaches the loop: a tiny cap changes the trained weights, and
    the run records the option."""
    from minidl_cli.runs import load_checkpoint

    runs = {}
    for clip in (None, 1e-3):
        config = {**TINY, "seed": 0, "train": {**TINY["train"], "clip_grad_norm": clip}}
        (tmp_path / str(clip)).mkdir()
        result = invoke("train", write_config(tmp_path / str(clip), config), "-q")
        assert result.exit_code == 0, result.output
        run = result.stdout.strip().splitlines()[-1]
        runs[clip] = load_checkpoint(f"{run}/checkpoints/last.pt")
    assert runs[1e-3]["config"]["train"]["clip_grad_norm"] == 1e-3
    weights = [(runs[None]["model"][k], runs[1e-3]["model"][k]) for k in runs[None]["model"]]
    assert any(not torch.allclose(a, b) for a, b in weights)
