"""Time one training step of a recurrent network: minidl against torch.nn + autograd and a raw loop.

The network: a GRU or an LSTM over (N, T, I) inputs, every output kept, flattened, then a
linear layer to the classes, with cross-entropy and Adam (lr 1e-2):

    gru|lstm (hidden H, output sequence) → flatten → linear C

at two sizes: MNIST-1D's (Greydanus & Kobak's GRU: batch 100, T 40, one input feature,
hidden 6, bidirectional, 10 classes) and a character model's (batch 32, T 64, 256 input
features, hidden 256, one direction, 65 classes). Three implementations run side by side
in one process, from the same weights on the same batches:

- minidl:   nn.Sequential(nn.GRU(...), nn.Flatten(), nn.Linear(...)), nn.CrossEntropyLoss,
            optim.Adam, as a user writes the loop;
- torch.nn: torch.nn.GRU/LSTM(batch_first=True) + autograd + torch.optim.Adam;
- raw:      the same forward and backpropagation through time as minidl's (the
            directions side by side), hand-inlined in plain functions on bare tensors (no
            modules, no Parameter objects, no input gradient for the data), the same Adam
            arithmetic: minidl / raw is what minidl's bookkeeping costs.

Before timing, the three run a few float64 steps and must agree to 1e-10. Timing as in
bench_step.py: interleaved, best of N, the thread's CPU time, one intra-op thread.

    python benchmarks/bench_rnn.py
    python benchmarks/bench_rnn.py --cells gru --sizes mnist1d --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import (  # noqa: E402  (bench_step puts the checkout on sys.path)
    CLOCKS,
    STEPS_PER_EPOCH,
    agreed,
    best_of,
    epoch_batches,
    print_header,
)

from minidl_cli import __version__, nn, optim  # noqa: E402

LR = 1e-2
SIZES = {  # name: (batch, T, input features, hidden, bidirectional, classes)
    "mnist1d": (100, 40, 1, 6, True, 10),
    "char": (32, 64, 256, 256, False, 65),
}


def sequence_data(size: str, dtype: torch.dtype, seed: int = 0):
    batch, T, features, _, _, classes = SIZES[size]
    gen = torch.Generator().manual_seed(seed)
    n = STEPS_PER_EPOCH * batch
    x = torch.randn(n, T, features, generator=gen, dtype=torch.float64)
    return x.to(dtype), torch.randint(0, classes, (n,), generator=gen)


def initial_weights(cell: str, size: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """torch.nn's initialisation of the recurrent layer and the head, as a state dict."""
    _, T, features, hidden, bidirectional, classes = SIZES[size]
    torch.manual_seed(seed)
    rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](
        features, hidden, batch_first=True, bidirectional=bidirectional)
    head = torch.nn.Linear(T * hidden * (2 if bidirectional else 1), classes)
    state = {f"0.{k}": v for k, v in rnn.state_dict().items()}
    state.update({f"2.{k}": v for k, v in head.state_dict().items()})
    return {k: v.to(dtype) for k, v in state.items()}


class Minidl:
    name = "minidl"

    def __init__(self, cell: str, size: str, weights: dict):
        _, T, features, hidden, bidirectional, classes = SIZES[size]
        layer = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        width = T * hidden * (2 if bidirectional else 1)
        self.net = nn.Sequential(layer(features, hidden, bidirectional=bidirectional),
                                 nn.Flatten(), nn.Linear(width, classes))
        self.net.to(next(iter(weights.values())).dtype)
        self.net.load_state_dict(weights)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = optim.Adam(self.net.parameters(), lr=LR)

    def epoch(self, batches) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        with torch.no_grad():
            for xb, yb in batches:
                loss_fn(net(xb), yb)
                net.backward(loss_fn.backward())
                opt.step()
                opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return list(self.net.state_dict().values())


class TorchNN:
    name = "torch.nn"

    def __init__(self, cell: str, size: str, weights: dict):
        _, T, features, hidden, bidirectional, classes = SIZES[size]
        rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](
            features, hidden, batch_first=True, bidirectional=bidirectional)
        width = T * hidden * (2 if bidirectional else 1)
        self.rnn, self.head = rnn, torch.nn.Linear(width, classes)
        dtype = next(iter(weights.values())).dtype
        self.rnn.to(dtype), self.head.to(dtype)
        self.rnn.load_state_dict({k[2:]: v for k, v in weights.items() if k[0] == "0"})
        self.head.load_state_dict({k[2:]: v for k, v in weights.items() if k[0] == "2"})
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam([*self.rnn.parameters(), *self.head.parameters()], lr=LR)

    def epoch(self, batches) -> None:
        rnn, head, loss_fn, opt = self.rnn, self.head, self.loss_fn, self.opt
        for xb, yb in batches:
            loss = loss_fn(head(rnn(xb)[0].flatten(1)), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return [*(v.detach() for v in self.rnn.state_dict().values()),
                *(v.detach() for v in self.head.state_dict().values())]


# ---------------------------------------------------------------- the raw loop


def gru_steps(a, w_hh, b_hh):
    """Forward over time of the D directions side by side, a (T, D, N, 3H) the input
    projections; returns hs (T, D, N, H) and the backward through time."""
    T, D, N, G = a.shape
    H = G // 3
    hs, ns = a.new_empty(T, D, N, H), a.new_empty(T, D, N, H)
    hh, rz = a.new_empty(T, D, N, G), a.new_empty(T, D, N, 2 * H)
    h, w_hh_t, b = a.new_zeros(D, N, H), w_hh.transpose(1, 2), b_hh.unsqueeze(1)
    for t in range(T):
        torch.baddbmm(b, h, w_hh_t, out=hh[t])
        rz_t = torch.add(a[t, ..., :2 * H], hh[t, ..., :2 * H], out=rz[t]).sigmoid_()
        r, z = rz_t.chunk(2, 2)
        n = torch.addcmul(a[t, ..., 2 * H:], r, hh[t, ..., 2 * H:], out=ns[t]).tanh_()
        h = torch.lerp(n, h, z, out=hs[t])

    def backward(g):
        r, z = rz.chunk(2, 3)
        hn, h_prev = hh[..., 2 * H:], torch.cat((torch.zeros_like(hs[:1]), hs[:-1]))
        dan = (1 - z) * (1 - ns * ns)
        dar = dan * hn * r * (1 - r)
        daz = (h_prev - ns) * z * (1 - z)
        dhh_dh = torch.stack((dar, daz, dan * r), 3)
        dhs, d_hh = g.new_empty(T, D, N, H), g.new_empty(T, D, N, 3, H)
        dh_next = g.new_zeros(D, N, H)
        for t in reversed(range(T)):
            dh = torch.add(g[t], dh_next, out=dhs[t])
            torch.mul(dh.unsqueeze(2), dhh_dh[t], out=d_hh[t])
            dh_next = torch.baddbmm(dh * z[t], d_hh[t].view(D, N, G), w_hh)
        d_a = dhs.unsqueeze(3) * torch.stack((dar, daz, dan), 3)
        return d_a.view(T, D, N, G), d_hh.view(T, D, N, G)

    return hs, backward


def lstm_steps(a, w_hh, b_hh):
    T, D, N, G = a.shape
    H = G // 4
    a = a + b_hh.unsqueeze(1)
    hs, cs, tcs = (a.new_empty(T, D, N, H) for _ in range(3))
    gates, pre = a.new_empty(T, D, N, 4, H), a.new_empty(D, N, 4, H)
    h, c, w_hh_t = a.new_zeros(D, N, H), a.new_zeros(D, N, H), w_hh.transpose(1, 2)
    for t in range(T):
        torch.baddbmm(a[t], h, w_hh_t, out=pre.view(D, N, G))
        torch.sigmoid(pre, out=gates[t])
        torch.tanh(pre[:, :, 2], out=gates[t, :, :, 2])
        i, f, gg, o = gates[t].unbind(2)
        c = torch.addcmul(f * c, i, gg, out=cs[t])
        h = torch.mul(o, torch.tanh(c, out=tcs[t]), out=hs[t])

    def backward(g):
        i, f, gg, o = gates.unbind(3)
        c_prev = torch.cat((torch.zeros_like(cs[:1]), cs[:-1]))
        dc_dh = o * (1 - tcs * tcs)
        dpre_dc = torch.stack((gg * i * (1 - i), c_prev * f * (1 - f), i * (1 - gg * gg)), 3)
        dpre_o = tcs * o * (1 - o)
        d_pre = gates.new_empty(T, D, N, 4, H)
        dh_next, dc_next = g.new_zeros(D, N, H), g.new_zeros(D, N, H)
        for t in reversed(range(T)):
            dh = g[t] + dh_next
            dc = torch.addcmul(dc_next, dh, dc_dh[t])
            torch.mul(dc.unsqueeze(2), dpre_dc[t], out=d_pre[t, :, :, :3])
            torch.mul(dh, dpre_o[t], out=d_pre[t, :, :, 3])
            dc_next = dc * f[t]
            dh_next = torch.bmm(d_pre[t].view(D, N, G), w_hh)
        d_pre = d_pre.view(T, D, N, G)
        return d_pre, d_pre

    return hs, backward


class Raw:
    name = "raw"

    def __init__(self, cell: str, size: str, weights: dict):
        self.steps = {"gru": gru_steps, "lstm": lstm_steps}[cell]
        self.D = 2 if SIZES[size][4] else 1
        self.params = [w.clone() for w in weights.values()]
        self.grads = [torch.zeros_like(w) for w in self.params]
        self.m = [torch.zeros_like(w) for w in self.params]
        self.v = [torch.zeros_like(w) for w in self.params]
        self.t = 0

    def epoch(self, batches) -> None:
        p, gr, D = self.params, self.grads, self.D
        w_ih, w_hh, b_ih, b_hh = (p[k::4][:D] for k in range(4))  # per direction
        with torch.no_grad():
            for xb, yb in batches:
                N = len(yb)
                seq = xb.transpose(0, 1)
                x = torch.stack((seq, seq.flip(0))[:D], 1)  # (T, D, N, I)
                T = x.size(0)
                a = torch.stack([torch.addmm(b_ih[d], x[:, d].reshape(T * N, -1), w_ih[d].t())
                                 .view(T, N, -1) for d in range(D)], 1)
                hs, backward = self.steps(a, torch.stack(w_hh), torch.stack(b_hh))
                H = hs.size(3)
                out = hs[:, 0] if D == 1 else torch.cat((hs[:, 0], hs[:, 1].flip(0)), 2)
                flat = out.transpose(0, 1).reshape(N, -1)
                w, b = p[4 * D], p[4 * D + 1]
                prob = torch.softmax(torch.addmm(b, flat, w.t()), 1)
                rows = torch.arange(N)
                -prob[rows, yb].log().mean()  # the loss value
                prob[rows, yb] -= 1
                g = prob.div_(N)  # dL/dlogits = (softmax − onehot) / N
                gr[4 * D].addmm_(g.t(), flat)
                gr[4 * D + 1].add_(g.sum(0))
                g_seq = g.mm(w).view(N, T, D * H).transpose(0, 1)
                g_steps = torch.stack((g_seq[..., :H], g_seq[..., H:].flip(0))[:D], 1)
                d_a, d_hh = backward(g_steps)
                G = d_a.size(3)
                for d in range(D):
                    da, dhh = d_a[:, d].reshape(T * N, G), d_hh[:, d].reshape(T, N, G)
                    gr[4 * d + 1].addmm_(dhh[1:].reshape(-1, G).t(), hs[:-1, d].reshape(-1, H))
                    gr[4 * d].addmm_(da.t(), x[:, d].reshape(T * N, -1))
                    gr[4 * d + 3].add_(dhh.sum((0, 1)))
                    gr[4 * d + 2].add_(da.sum(0))
                self._adam()

    def _adam(self) -> None:
        self.t += 1
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step_size, correction2 = LR / (1 - beta1**self.t), (1 - beta2**self.t) ** 0.5
        for w, g, m, v in zip(self.params, self.grads, self.m, self.v, strict=True):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            w.addcdiv_(m, (v.sqrt() / correction2).add_(eps), value=-step_size)
            g.zero_()

    def weights(self) -> list[torch.Tensor]:
        return self.params


IMPLEMENTATIONS = [Minidl, TorchNN, Raw]


def check_agreement(cell: str, size: str, epochs: int = 1) -> float:
    """Max relative weight difference after `epochs` × 10 float64 steps."""
    x, y = sequence_data(size, torch.float64)
    weights = initial_weights(cell, size, torch.float64)
    impls = [cls(cell, size, weights) for cls in IMPLEMENTATIONS]
    for e in range(epochs):
        batches = epoch_batches(x, y, SIZES[size][0], torch.Generator().manual_seed(e))
        for impl in impls:
            impl.epoch(batches)
    reference = impls[1].weights()
    worst = 0.0
    for impl in (impls[0], impls[2]):
        for a, b in zip(impl.weights(), reference, strict=True):
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item())
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"], choices=["gru", "lstm"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=7, help="best of this many (default 7)")
    parser.add_argument("--budget", type=float, default=0.2,
                        help="seconds per measurement (default 0.2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if torch.get_num_threads() > 1 and args.clock == "cpu":
        args.clock = "wall"
    for cell in args.cells:
        if not agreed(check_agreement(cell, "mnist1d"), f"{cell}: the implementations disagree"):
            return 1
    print(f"minidl {__version__}, torch {torch.__version__}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, "
          f"float32, {args.clock} time, best of {args.repeats}")
    print()
    print_header("| cell | size | minidl ms/step | torch.nn ms/step | raw ms/step "
                 "| torch.nn / minidl | minidl / raw |")
    missed = []
    for cell in args.cells:
        for size in args.sizes:
            data = sequence_data(size, torch.float32)
            weights = initial_weights(cell, size, torch.float32)
            impls = [cls(cell, size, weights) for cls in IMPLEMENTATIONS]
            ms = {k: v * 1e3 for k, v in best_of(impls, data, SIZES[size][0], args.repeats,
                                                  args.budget, CLOCKS[args.clock]).items()}
            speedup, overhead = ms["torch.nn"] / ms["minidl"], ms["minidl"] / ms["raw"]
            print(f"| {cell:>4} | {size:>7} | {ms['minidl']:>14.2f} | {ms['torch.nn']:>16.2f} "
                  f"| {ms['raw']:>11.2f} | {speedup:>16.2f}× | {overhead:>11.2f}× |", flush=True)
            if speedup < 1.0:
                missed.append(f"{cell} {size}: torch.nn / minidl = {speedup:.2f} < 1.0")
            if overhead > 1.2:
                missed.append(f"{cell} {size}: minidl / raw = {overhead:.2f} > 1.2")
    print()
    print("targets: torch.nn / minidl ≥ 1.0 and minidl / raw ≤ 1.2")
    for line in missed:
        print(f"  missed: {line}")
    print("  all met" if not missed else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
