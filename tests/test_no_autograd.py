"""Guard: minidl trains without autograd — it must work when autograd is made to raise."""

import pytest
import torch

from minidl_cli import nn, optim


@pytest.fixture
def autograd_forbidden(monkeypatch):
    def forbidden(*args, **kwargs):
        raise RuntimeError("autograd was used")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    with torch.no_grad():
        yield


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                      lambda p: optim.Adam(p, lr=0.01),
                                      lambda p: optim.AdamW(p, lr=0.01, amsgrad=True),
                                      lambda p: optim.RMSprop(p, lr=0.003, centered=True),
                                      lambda p: optim.Adagrad(p, lr=0.1)])
def test_training_loop_learns_with_autograd_patched_to_raise(autograd_forbidden, make_opt):
    torch.manual_seed(0)
    x = torch.rand(200, 2)
    labels = ((x - 0.5).norm(dim=1) < 0.3).long()
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = make_opt(net.parameters())
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = loss_fn(net(x), labels)
        net.backward(loss_fn.backward())
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.7 * first
    with pytest.raises(RuntimeError, match="autograd was used"):
        torch.ones(1, requires_grad=True).sum().backward()
