"""Check hand-written backward passes against torch autograd (the oracle) in float64.

`check_module` runs one module's forward and backward, then the same computation under
autograd — through the module's torch.nn twin when it declares one, otherwise through the
module's own forward — and returns the relative errors of the output, the input gradient
and every parameter gradient. Without a twin the output has no independent reference: the
report says so (`reference`) and holds no output error, rather than a 0.0 from comparing
the forward with itself. Tests and `minidl gradcheck` both use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from minidl_cli import nn, optim

TOLERANCE = 1e-10
NO_TWIN = "no torch.nn twin: gradients against autograd of its own forward, output unchecked"


def rel_error(actual: Tensor, expected: Tensor) -> float:
    """max |a − e| / max |e| (absolute error where e is all zeros)."""
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    scale = expected.abs().max().item() if expected.numel() else 0.0
    diff = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return diff / scale if scale > 0 else diff


@dataclass
class Report:
    """Relative errors of one module's output and gradients against the oracle."""

    name: str
    errors: dict[str, float] = field(default_factory=dict)  # 'output', 'input', param names
    # what the module was checked against: its torch.nn twin, or autograd of its own forward
    reference: str = "torch.nn twin"

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def passed(self, tolerance: float = TOLERANCE) -> bool:
        return self.max_error <= tolerance


def torch_reference(module: nn.Module) -> torch.nn.Module | None:
    """The module's torch.nn twin (as the module declares it: `torch_twin`) in float64,
    with the same parameters, buffers and train/eval mode, or None when it has none."""
    twin = module.torch_twin()
    if twin is None:
        return None
    twin = twin.to(torch.float64).train(module.training)
    twin.load_state_dict(module.state_dict())
    return twin


def check_module(module: nn.Module, x: Tensor, grad_output: Tensor | None = None,
                 name: str | None = None, seed: int = 0) -> Report:
    """Compare `module`'s forward/backward on float64 `x` with torch autograd.

    Shape: x is whatever the module takes; grad_output has the output's shape (random if None).
    Integer inputs (token ids) have no gradient: no "input" error, and backward must return
    None; if its output is ids too (a flatten of ids), only that output is compared."""
    report = Report(name or type(module).__name__)
    module.zero_grad()
    reference = torch_reference(module)  # before forward changes any running statistics
    torch.manual_seed(seed)  # the same random draws (dropout) in both passes
    with torch.no_grad():
        output = module.forward(x)
        if not output.is_floating_point():  # ids in, ids out: nothing to differentiate
            return _outputs_only(report, output, reference, x)
        if grad_output is None:
            grad_output = torch.randn(output.shape, dtype=output.dtype,
                                      generator=torch.Generator().manual_seed(seed + 1))
        grad_input = module.backward(grad_output)

    differentiable = x.is_floating_point()
    x_ref = x.detach().clone().requires_grad_(differentiable)
    torch.manual_seed(seed)
    with torch.enable_grad():
        if reference is not None:
            ref_params = dict(reference.named_parameters())
            ref_output = reference(x_ref)
            ref_output.backward(grad_output)
        else:
            with _autograd_leaves(module) as ref_params:
                ref_output = module.forward(x_ref)
                ref_output.backward(grad_output)

    if reference is not None:  # without a twin, the forward would be compared with itself
        report.errors["output"] = rel_error(output, ref_output.detach())
    else:
        report.reference = NO_TWIN
    if differentiable:
        report.errors["input"] = rel_error(grad_input, x_ref.grad)
    elif grad_input is not None:
        raise AssertionError(f"{report.name}: backward returned a gradient for integer inputs")
    for pname, p in module.named_parameters():
        report.errors[pname] = rel_error(p.grad, ref_params[pname].grad)
    if reference is not None:  # running statistics, after the same forward pass
        ref_buffers = dict(reference.named_buffers())
        for bname, b in module.named_buffers():
            report.errors[bname] = rel_error(b.double(), ref_buffers[bname].double())
    return report


def _outputs_only(report: Report, output: Tensor, reference: torch.nn.Module | None,
                  x: Tensor) -> Report:
    """`report` for a module whose output holds no floats: its output against its twin's."""
    if reference is None:
        report.reference = NO_TWIN
    else:
        report.errors["output"] = rel_error(output.double(), reference(x).double())
    return report


def check_loss(loss: nn.Loss, prediction: Tensor, target: Tensor,
               reference: Callable[[Tensor, Tensor], Tensor], name: str | None = None) -> Report:
    """Compare a loss's value and dL/dprediction (forward, then backward()) with a
    torch.nn.functional reference, as errors "output" and "input"."""
    report = Report(name or type(loss).__name__)
    with torch.no_grad():
        value = loss(prediction, target)
        grad = loss.backward()
    pred_ref = prediction.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        ref_value = reference(pred_ref, target)
        ref_value.backward()
    report.errors["output"] = rel_error(value, ref_value.detach())
    report.errors["input"] = rel_error(grad, pred_ref.grad)
    return report


def central_difference(module: nn.Module, x: Tensor, directions: int = 3, eps: float = 1e-6,
                       seed: int = 0) -> float | None:
    """Relative error of ⟨dL/dx, v⟩ against (L(x + εv) − L(x − εv)) / 2ε, L = ⟨g, f(x)⟩;
    None for integer inputs (token ids): they have no derivative, so nothing is checked."""
    if not x.is_floating_point():
        return None
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(directions):
        torch.manual_seed(seed)
        with torch.no_grad():
            output = module.forward(x)
            g = torch.randn(output.shape, dtype=x.dtype, generator=gen)
            module.zero_grad()
            analytic = (module.backward(g) * (v := torch.randn(x.shape, dtype=x.dtype,
                                                               generator=gen))).sum()
            torch.manual_seed(seed)
            plus = (g * module.forward(x + eps * v)).sum()
            torch.manual_seed(seed)
            minus = (g * module.forward(x - eps * v)).sum()
        numeric = (plus - minus) / (2 * eps)
        scale = max(abs(numeric.item()), abs(analytic.item()), 1e-12)
        worst = max(worst, abs(numeric.item() - analytic.item()) / scale)
    return worst


@contextlib.contextmanager
def _autograd_leaves(module: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Each parameter's data swapped for an autograd leaf, so autograd can differentiate the
    module's forward; yields the leaves by name and puts the original data back after."""
    originals = {pname: p.data for pname, p in module.named_parameters()}
    leaves = {pname: data.detach().clone().requires_grad_(True)
              for pname, data in originals.items()}
    for pname, p in module.named_parameters():
        p.data = leaves[pname]
    try:
        yield leaves
    finally:
        for pname, p in module.named_parameters():
            p.data = originals[pname]


def torch_loss_reference(loss: nn.Loss) -> Callable[[Tensor, Tensor], Tensor]:
    """torch.nn.functional's version of a built-in loss; autograd of its forward otherwise."""
    F = torch.nn.functional
    functional = {nn.MSELoss: F.mse_loss, nn.L1Loss: F.l1_loss, nn.HuberLoss: F.huber_loss,
                  nn.SmoothL1Loss: F.smooth_l1_loss,
                  nn.CrossEntropyLoss: F.cross_entropy}.get(type(loss))
    if functional is None:
        return loss.forward
    if functional is F.cross_entropy:  # torch's class axis is 1, minidl's the last: (N, T, C)
        return lambda prediction, target: F.cross_entropy(
            prediction.movedim(-1, 1), target, reduction=loss.reduction,
            ignore_index=loss.ignore_index)
    options = {name: getattr(loss, name) for name in ("delta", "beta") if hasattr(loss, name)}
    return lambda prediction, target: functional(prediction, target, reduction=loss.reduction,
                                                 **options)


NUMERIC_ROWS = 8  # inputs check_network differentiates numerically, per module


@dataclass
class NetworkReport:
    """One row per module (autograd and central differences), and one for the loss."""

    rows: list[tuple[Report, float | None]]

    def passed(self, tolerance: float = TOLERANCE, numeric_tolerance: float = 1e-5) -> bool:
        return all(r.passed(tolerance) and (n is None or n <= numeric_tolerance)
                   for r, n in self.rows)


def check_network(model: nn.Sequential, loss_fn: nn.Loss, x: Tensor,
                  target: Tensor) -> NetworkReport:
    """Check every module of `model` on the activations it really sees, then the loss.

    Central differences need a point where the module is differentiable: real activations
    after a ReLU put whole max-pooling windows of zeros on a tie, where no derivative
    exists. They are taken at the activations plus Gaussian noise of their own scale.
    Shape: x (N, *input_shape) float64; target as the loss takes it.
    """
    rows = []
    h = x
    noise = torch.Generator().manual_seed(0)
    for i, module in enumerate(model):
        name = f"[{i}] {type(module).__name__}"
        jittered = h  # token ids (an embedding's input) have no neighbours to step to
        if h.is_floating_point():
            jittered = h + h.std(correction=0) * torch.randn(h.shape, dtype=h.dtype,
                                                             generator=noise)
        # a few rows: each element of a ReLU's input is a chance for the ±ε step to cross
        # its kink, where the difference quotient is no derivative
        report = check_module(module, h, name=name)
        rows.append((report, central_difference(module, jittered[:NUMERIC_ROWS], eps=1e-7)))
        with torch.no_grad():
            torch.manual_seed(0)
            h = module.forward(h)
    loss_report = check_loss(loss_fn, h, target, torch_loss_reference(loss_fn),
                             name=f"loss {type(loss_fn).__name__}")
    rows.append((loss_report, None))
    return NetworkReport(rows)


OPTIMIZER_STEPS = 30


TORCH_OPTIMIZERS = {optim.SGD: torch.optim.SGD, optim.Adam: torch.optim.Adam,
                    optim.AdamW: torch.optim.AdamW, optim.RMSprop: torch.optim.RMSprop,
                    optim.Adagrad: torch.optim.Adagrad}


def torch_optimizer(optimizer: optim.Optimizer, params) -> torch.optim.Optimizer:
    """The torch.optim optimizer of the same class and hyper-parameters (single-tensor path)."""
    return TORCH_OPTIMIZERS[type(optimizer)](params, **optimizer.defaults, foreach=False)


def check_optimizer(make: Callable[[list[nn.Parameter]], optim.Optimizer],
                    reference: Callable[[list], torch.optim.Optimizer] | None = None,
                    steps: int = OPTIMIZER_STEPS, seed: int = 0,
                    schedules: tuple[Callable, Callable] | None = None) -> Report:
    """Train twin float64 networks (minidl and torch.nn, same weights, an MSE regression) for
    `steps` steps, one with `make(params)`, one with `reference(params)` (by default torch.optim's
    optimizer of the same class and options), and report each parameter's largest relative
    difference over the steps. `schedules`: (ours, torch's) factories of an LR schedule stepped
    after every step; a learning-rate difference is reported as 'lr'.
    """
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype=torch.float64)
    twin = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 2)).double()
    twin.load_state_dict(net.state_dict())
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    ours = make(net.parameters())
    theirs = (reference or (lambda params: torch_optimizer(ours, params)))(twin.parameters())
    schedule = schedules[0](ours) if schedules else None
    twin_schedule = schedules[1](theirs) if schedules else None
    report = Report(f"optimizer {type(ours).__name__}")
    loss_fn = nn.MSELoss()
    for _ in range(steps):
        ours.zero_grad()
        with torch.no_grad():
            loss_fn(net(x), y)
            net.backward(loss_fn.backward())
        ours.step()
        theirs.zero_grad()
        with torch.enable_grad():
            torch.nn.functional.mse_loss(twin(x), y).backward()
        theirs.step()
        if schedule is not None:
            schedule.step()
            twin_schedule.step()
            lr, twin_lr = ours.param_groups[0]["lr"], theirs.param_groups[0]["lr"]
            report.errors["lr"] = max(report.errors.get("lr", 0.0),
                                      abs(lr - twin_lr) / max(abs(twin_lr), 1e-300))
        for (name, p), tp in zip(net.named_parameters(), twin.parameters(), strict=True):
            report.errors[name] = max(report.errors.get(name, 0.0), rel_error(p.data, tp.detach()))
    return report
