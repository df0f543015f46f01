"""The regression losses (L1, Huber, SmoothL1) against torch.nn.functional in float64, through
the shared oracle helper: both reductions, ties (x = y, |x − y| = delta), and their options.

Every registered loss also runs in test_oracle.py's registry-wide check.
"""

import pytest
import torch
import torch.nn.functional as F

from minidl_cli import nn, registry
from minidl_cli.gradcheck import check_loss, check_network, torch_loss_reference

REDUCTIONS = ["mean", "sum"]
REGRESSION_LOSSES = [
    lambda r: nn.MSELoss(reduction=r),
    lambda r: nn.L1Loss(reduction=r),
    lambda r: nn.HuberLoss(reduction=r),
    lambda r: nn.HuberLoss(reduction=r, delta=0.25),
    lambda r: nn.HuberLoss(reduction=r, delta=3.0),
    lambda r: nn.SmoothL1Loss(reduction=r),
    lambda r: nn.SmoothL1Loss(reduction=r, beta=0.25),
    lambda r: nn.SmoothL1Loss(reduction=r, beta=0.0),
]


def _with_ties(n, c, delta=1.0, seed=0):
    """Prediction and target (n, c) float64 where some x = y and some |x − y| = ±delta exactly."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(n, c, dtype=torch.float64, generator=gen).mul(64).round().div(64)
    prediction = target + 2 * torch.randn(n, c, dtype=torch.float64, generator=gen)
    flat_p, flat_t = prediction.view(-1), target.view(-1)
    flat_p[0::5] = flat_t[0::5]  # x = y: the kink of L1 (gradient 0, as torch)
    flat_p[1::5] = flat_t[1::5] + delta  # |x − y| = delta: where Huber turns linear
    flat_p[2::5] = flat_t[2::5] - delta
    assert n * c < 3 or (prediction - target).abs().eq(delta).any()  # exact: dyadic numbers
    return prediction, target


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 5)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("make", REGRESSION_LOSSES, ids=lambda m: repr(m("mean")))
def test_regression_loss_matches_functional_with_ties(make, reduction, shape):
    loss = make(reduction)
    delta = getattr(loss, "delta", getattr(loss, "beta", 1.0))
    prediction, target = _with_ties(*shape, delta=delta)
    report = check_loss(loss, prediction, target, torch_loss_reference(loss))
    assert report.passed(), report.errors


def test_the_reference_really_is_torch():
    loss = nn.HuberLoss(reduction="sum", delta=0.5)
    x, y = torch.tensor([[0.2, 3.0]]), torch.tensor([[0.0, 0.0]])
    expected = F.huber_loss(x, y, reduction="sum", delta=0.5)
    assert torch_loss_reference(loss)(x, y) == expected
    assert loss(x, y) == pytest.approx(expected.item())


def test_l1_gradient_is_zero_at_ties_and_the_sign_elsewhere():
    loss = nn.L1Loss(reduction="sum")
    loss(torch.tensor([[1.0, 2.0, -3.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert loss.backward().tolist() == [[0.0, 1.0, -1.0]]


def test_huber_gradient_is_the_difference_clamped_to_delta():
    loss = nn.HuberLoss(reduction="sum", delta=0.5)
    value = loss(torch.tensor([[0.2, 3.0, -1.0, 0.5]]), torch.zeros(1, 4))
    assert loss.backward()[0].tolist() == pytest.approx([0.2, 0.5, -0.5, 0.5])
    # 0.2²/2 + 0.5·(3 − 0.25) + 0.5·(1 − 0.25) + 0.5²/2
    assert value.item() == pytest.approx(0.02 + 1.375 + 0.375 + 0.125)


def test_mean_divides_by_every_element():
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    for cls in (nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss):
        mean, total = cls(), cls(reduction="sum")
        assert mean(x, y).item() == pytest.approx(total(x, y).item() / 12)
        assert torch.allclose(mean.backward() * 12, total.backward())


@pytest.mark.parametrize("cls", [nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss])
def test_targets_encode_class_labels_like_mse(cls):
    labels = torch.tensor([0, 2])
    assert cls().targets(labels, 3, torch.float32).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert cls(targets="signed").targets(labels, 3, torch.float32).tolist() == \
        [[1, -1, -1], [-1, -1, 1]]


@pytest.mark.parametrize("make,message", [
    (lambda: nn.HuberLoss(delta=0), "delta > 0"),
    (lambda: nn.HuberLoss(delta=-1.0), "delta > 0"),
    (lambda: nn.SmoothL1Loss(beta=-0.5), "beta >= 0"),
    (lambda: nn.L1Loss(reduction="none"), "reduction must be 'mean' or 'sum'"),
    (lambda: nn.L1Loss(targets="binary"), "targets must be 'onehot' or 'signed'"),
])
def test_bad_options_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("cls", [nn.MSELoss, nn.L1Loss, nn.HuberLoss, nn.SmoothL1Loss])
def test_shape_mismatch_names_the_loss(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__} needs a target of the prediction's"):
        cls()(torch.randn(4, 2), torch.randn(4))


@pytest.mark.parametrize("name,alias", [("l1", "L1Loss"), ("huber", "HuberLoss"),
                                        ("smooth_l1", "SmoothL1Loss")])
def test_registered_with_torch_aliases(name, alias):
    assert registry.lookup("loss", alias).name == name
    assert registry.lookup("loss", name).target is getattr(nn, alias)
    options = {o.name: o.default for o in registry.lookup("loss", name).options()}
    assert options["reduction"] == "mean" and options["targets"] == "onehot"


@pytest.mark.parametrize("loss", [nn.L1Loss(), nn.HuberLoss(delta=0.5)], ids=repr)
def test_a_network_trained_with_it_passes_the_network_check(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).to(dtype=torch.float64)
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    assert check_network(model, loss, x, y).passed()
