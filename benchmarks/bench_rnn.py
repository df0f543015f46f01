"""Time one training step of a recurrent network: minidl against torch.nn + autograd and a raw loop.

The network: a GRU or an LSTM over (N, T, I) inputs, every output kept, flattened, then a
linear layer to the classes, with cross-entropy and Adam (lr 1e-2):

    gru|lstm (hidden H, output sequence) → flatten → linear C

at two sizes: MNIST-1D's (Greydanus & Kobak's GRU: batch 100, T 40, one input feature,
hidden 6, bidirectional, 10 classes) and a character model's (batch 32, T 64, 256 input
features, hidden 256, one direction, 65 classes). Three implementations run side by side
in one process, from the same weights on the same batches:

- minidl:   nn.Sequential(nn.GRU(...), nn.Flatten(), nn.Linear(...)), nn.CrossEntropyLoss,
            optim.Adam, as the trainer runs the loop (backward_params: no gradient for
            the data);
- torch.nn: torch.nn.GRU/LSTM(batch_first=True) + autograd + torch.optim.Adam;
- raw:      the same forward and backpropagation through time as minidl's (its layout:
            time first, the directions side by side, the batch innermost), hand-inlined in
            plain functions on bare tensors: no modules, no Parameter objects, no input
            gradient for the data, each kind of weight of both directions kept in one
            tensor (nothing stacked per step), the head's gradient for the hidden states
            computed in their layout, (g W)ᵀ = Wᵀ gᵀ (no transposing copy), the same Adam
            arithmetic: minidl / raw is what minidl's bookkeeping costs.

Before timing, the three run a few float64 steps and must agree to 1e-10. Timing as in
bench_step.py: interleaved, best of N, the thread's CPU time, one intra-op thread.

    python benchmarks/bench_rnn.py
    python benchmarks/bench_rnn.py --cells gru --sizes mnist1d --repeats 5
    python benchmarks/bench_rnn.py --floor     # the layer alone against its matrix products
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
                net.backward_params(loss_fn.backward())  # the data needs no gradient
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
#
# The layout is minidl's: a step's vectors are columns, (T, D, F, N) with the batch innermost,
# the reverse direction reading the input flipped in time. The raw loop keeps each kind of
# weight of the D directions in one (D, …) tensor, so nothing is stacked per step.


def gru_steps(a, w_hh, b_hh):
    """Forward over time of the D directions side by side, a (T, D, 3H, N) the input
    projections; returns hs (T + 1, D, H, N), hs[0] = 0, and the backward through time."""
    T, D, G, N = a.shape
    H = G // 3
    hs, ns = a.new_empty(T + 1, D, H, N), a.new_empty(T, D, H, N)
    hh, rz = a.new_empty(T, D, G, N), a.new_empty(T, D, 2 * H, N)
    hs[0].zero_()
    h, n, hh_, rz_ = (t.unbind(0) for t in (hs, ns, hh, rz))
    a_rz, a_n = a[:, :, :2 * H].unbind(0), a[:, :, 2 * H:].unbind(0)
    hh_rz, hh_n = hh[:, :, :2 * H].unbind(0), hh[:, :, 2 * H:].unbind(0)
    r, z = (t.unbind(0) for t in rz.view(T, D, 2, H, N).unbind(2))
    b_n = b_hh[:, 2 * H:].unsqueeze(2)  # b_hr and b_hz are in a
    for t in range(T):
        torch.bmm(w_hh, h[t], out=hh_[t])
        hh_n[t].add_(b_n)
        torch.add(a_rz[t], hh_rz[t], out=rz_[t]).sigmoid_()
        torch.addcmul(a_n[t], r[t], hh_n[t], out=n[t]).tanh_()
        torch.lerp(n[t], h[t], z[t], out=h[t + 1])

    def backward(g):
        rr, zz = rz.view(T, D, 2, H, N).unbind(2)
        da_dh, dhh_dh = g.new_empty(T, D, 3, H, N), g.new_empty(T, D, 3, H, N)
        dar, daz, dan = da_dh.unbind(2)
        torch.mul(1 - zz, 1 - ns * ns, out=dan)
        torch.mul(dan * hh[:, :, 2 * H:], rr * (1 - rr), out=dar)
        torch.mul((hs[:-1] - ns) * zz, 1 - zz, out=daz)
        dhh_dh[:, :, :2] = da_dh[:, :, :2]
        torch.mul(dan, rr, out=dhh_dh[:, :, 2])
        d_a, d_hh = g.new_empty(D, 3, H, T, N), g.new_empty(D, 3, H, T, N)
        w_hh_t = w_hh.transpose(1, 2)
        g_, z_, da_dh_, dhh_dh_ = (t.unbind(0) for t in (g, zz, da_dh, dhh_dh))
        d_a_, d_hh_, d_hh_flat = d_a.unbind(3), d_hh.unbind(3), d_hh.view(D, G, T, N).unbind(2)
        dh = g_[-1]
        for t in reversed(range(T)):
            dh_col = dh.unsqueeze(1)
            torch.mul(dh_col, da_dh_[t], out=d_a_[t])
            torch.mul(dh_col, dhh_dh_[t], out=d_hh_[t])
            if t:
                dh = torch.baddbmm(torch.addcmul(g_[t - 1], dh, z_[t]), w_hh_t, d_hh_flat[t])
        return d_a.view(D, G, T * N), d_hh.view(D, G, T * N)

    return hs, backward


def lstm_steps(a, w_hh, b_hh):
    T, D, G, N = a.shape  # b_hh is in a
    H = G // 4
    gates, pre = a.new_empty(T, D, G, N), a.new_empty(D, G, N)
    hs, cs, tcs = a.new_empty(T + 1, D, H, N), a.new_empty(T + 1, D, H, N), a.new_empty(T, D, H, N)
    hs[0].zero_(), cs[0].zero_()
    a_, gates_, h, c, tc = (t.unbind(0) for t in (a, gates, hs, cs, tcs))
    i, f, gg, o = (t.unbind(0) for t in gates.view(T, D, 4, H, N).unbind(2))
    pre_g = pre[:, 2 * H:3 * H]
    for t in range(T):
        torch.baddbmm(a_[t], w_hh, h[t], out=pre)
        torch.sigmoid(pre, out=gates_[t])
        torch.tanh(pre_g, out=gg[t])
        torch.addcmul(f[t] * c[t], i[t], gg[t], out=c[t + 1])
        torch.mul(o[t], torch.tanh(c[t + 1], out=tc[t]), out=h[t + 1])

    def backward(g):
        ii, ff, gt, oo = gates.view(T, D, 4, H, N).unbind(2)
        dc_dh = oo * (1 - tcs * tcs)
        dpre_dc = g.new_empty(T, D, 3, H, N)
        torch.mul(gt * ii, 1 - ii, out=dpre_dc[:, :, 0])
        torch.mul(cs[:-1] * ff, 1 - ff, out=dpre_dc[:, :, 1])
        torch.mul(ii, 1 - gt * gt, out=dpre_dc[:, :, 2])
        dpre_o = tcs * oo * (1 - oo)
        d_pre, w_hh_t = gates.new_empty(T, D, 4, H, N), w_hh.transpose(1, 2)
        g_, f_, dc_dh_, dpre_dc_, dpre_o_ = (t.unbind(0) for t in (g, ff, dc_dh, dpre_dc, dpre_o))
        d_ifg, d_o = d_pre[:, :, :3].unbind(0), d_pre[:, :, 3].unbind(0)
        d_pre_ = d_pre.view(T, D, G, N).unbind(0)
        dh, dc_next = g_[-1], g.new_zeros(D, H, N)
        for t in reversed(range(T)):
            dc = torch.addcmul(dc_next, dh, dc_dh_[t])
            torch.mul(dc.unsqueeze(1), dpre_dc_[t], out=d_ifg[t])
            torch.mul(dh, dpre_o_[t], out=d_o[t])
            if t:
                dc_next = dc * f_[t]
                dh = torch.baddbmm(g_[t - 1], w_hh_t, d_pre_[t])
        d_pre = d_pre.view(T, D, G, N).permute(1, 2, 0, 3).reshape(D, G, T * N)
        return d_pre, d_pre

    return hs, backward


class Raw:
    name = "raw"

    def __init__(self, cell: str, size: str, weights: dict):
        self.steps = {"gru": gru_steps, "lstm": lstm_steps}[cell]
        # the part of b_hh that adds to the input projection: all of it, or the GRU's r and z
        self.folded = slice(None) if cell == "lstm" else slice(0, 2 * SIZES[size][3])
        D = self.D = 2 if SIZES[size][4] else 1
        p = list(weights.values())
        # (D, …) per kind: w_ih, w_hh, b_ih, b_hh; then the head's weight and bias
        self.params = [torch.stack(p[k:4 * D:4]) for k in range(4)] + [w.clone() for w in p[4 * D:]]
        self.grads = [torch.zeros_like(w) for w in self.params]
        self.m = [torch.zeros_like(w) for w in self.params]
        self.v = [torch.zeros_like(w) for w in self.params]
        self.t = 0

    def epoch(self, batches) -> None:
        (w_ih, w_hh, b_ih, b_hh, w, b), D = self.params, self.D
        gw_ih, gw_hh, gb_ih, gb_hh, gw, gb = self.grads
        with torch.no_grad():
            for xb, yb in batches:
                N, T, _ = xb.shape
                xs = xb.reshape(N, -1).t().contiguous().view(T, -1, N).transpose(0, 1)  # (I, T, N)
                x = torch.stack((xs, xs.flip(1))[:D]).view(D, -1, T * N)
                bias = b_ih.clone()
                bias[:, self.folded] += b_hh[:, self.folded]
                a = torch.baddbmm(bias.unsqueeze(2), w_ih, x)
                a = a.view(D, -1, T, N).permute(2, 0, 1, 3).contiguous()  # (T, D, G, N)
                hs, backward = self.steps(a, w_hh, b_hh)
                H = hs.size(2)
                out = hs[1:, 0] if D == 1 else torch.cat((hs[1:, 0], hs[1:, 1].flip(0)), 1)
                flat = out.view(-1, N).t().contiguous()  # (N, T·D·H): one 2-D transpose
                log_prob = torch.log_softmax(torch.addmm(b, flat, w.t()), 1)
                torch.nn.functional.nll_loss(log_prob, yb)  # the loss value
                g = log_prob.exp_().scatter_(1, yb.unsqueeze(1), -1.0, reduce="add")
                g.div_(N)  # dL/dlogits = (softmax − onehot) / N
                gw.addmm_(g.t(), flat)
                gb.add_(g.sum(0))
                g_seq = w.t().mm(g.t()).view(T, D, H, N)  # (g w)ᵀ: each step's columns
                g_steps = g_seq if D == 1 else torch.stack((g_seq[:, 0], g_seq[:, 1].flip(0)), 1)
                d_a_steps, d_hh_steps = backward(g_steps)  # (D, G, T·N): the steps side by side
                h_prev = hs[1:-1].permute(1, 2, 0, 3).reshape(D, H, -1)
                gw_hh.baddbmm_(d_hh_steps[:, :, N:], h_prev.transpose(1, 2))
                gw_ih.baddbmm_(d_a_steps, x.transpose(1, 2))
                gb_hh.add_(d_hh_steps.sum(2))
                gb_ih.add_(d_a_steps.sum(2))
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
        """torch.nn's state-dict order: each direction's w_ih, w_hh, b_ih, b_hh, then the head."""
        *per_kind, w, b = self.params
        return [k[d] for d in range(self.D) for k in per_kind] + [w, b]


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


def layer_floor(cell: str, size: str, repeats: int, clock) -> dict[str, float]:
    """ms of the recurrent layer alone, forward and backward (no head, loss or optimizer),
    interleaved, best of `repeats`: torch.nn's (autograd; the input needs no gradient, as
    in the step), torch.nn's with oneDNN switched off (on CPU, torch runs an LSTM in
    float32 as oneDNN's fused RNN primitive when it may; off, its own loop of cells),
    minidl's (backward_params), and the matrix products alone that
    minidl's layer runs, on tensors of the same shapes: the input projection, one product
    per step forward, one per step but the first backward, dL/dW_hh and dL/dW_ih."""
    batch, T, features, hidden, bidirectional, _ = SIZES[size]
    D, G = (2 if bidirectional else 1), {"gru": 3, "lstm": 4}[cell] * hidden
    x, g = torch.randn(batch, T, features), torch.randn(batch, T, D * hidden)
    twin = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](
        features, hidden, batch_first=True, bidirectional=bidirectional)
    ours = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](features, hidden, bidirectional=bidirectional)
    w_ih, w_hh = torch.randn(D, G, features), torch.randn(D, G, hidden)
    xs, h, d = torch.randn(D, features, T * batch), torch.randn(D, hidden, batch), \
        torch.randn(D, G, T * batch)

    def torch_nn():
        twin(x)[0].backward(g)

    def torch_nn_unfused():  # torch's own per-step cell and autograd, without oneDNN's RNN
        without_onednn(torch_nn)

    def minidl():
        with torch.no_grad():
            ours(x)
            ours.backward_params(g)

    def products():
        torch.bmm(w_ih, xs)  # a = W_ih x, every step
        for _ in range(T):  # W_hh h_{t-1}
            torch.bmm(w_hh, h)
        for _ in range(T - 1):  # W_hhᵀ dL/dpre_t
            torch.bmm(w_hh.transpose(1, 2), d[:, :, :batch])
        torch.bmm(d, xs.transpose(1, 2))  # dL/dW_ih
        torch.bmm(d[:, :, batch:], d[:, :hidden, batch:].transpose(1, 2))  # dL/dW_hh

    return interleaved({"torch.nn layer": torch_nn, "torch.nn, oneDNN off": torch_nn_unfused,
                        "minidl layer": minidl, "its matrix products": products}, repeats, clock)


def without_onednn(run) -> None:
    """run() with torch's oneDNN (mkldnn) back end switched off, then as it was."""
    enabled, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
    try:
        run()
    finally:
        torch.backends.mkldnn.enabled = enabled


def interleaved(runs: dict, repeats: int, clock) -> dict[str, float]:
    """Best ms of each run, taking turns: each runs once to warm up, then once timed."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            run()
            start = clock()
            run()
            best[name] = min(best[name], (clock() - start) * 1e3)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"], choices=["gru", "lstm"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=7, help="best of this many (default 7)")
    parser.add_argument("--budget", type=float, default=0.2,
                        help="seconds per measurement (default 0.2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--floor", action="store_true",
                        help="time the recurrent layer alone against its matrix products alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if torch.get_num_threads() > 1 and args.clock == "cpu":
        args.clock = "wall"
    if args.floor:
        print_floor(args)
        return 0
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


def print_floor(args: argparse.Namespace) -> None:
    """--floor: the table of each recurrent layer alone against its matrix products alone."""
    print_header("| cell | size | torch.nn layer ms | torch.nn, oneDNN off, ms | minidl layer ms "
                 "| its matrix products ms |")
    for cell in args.cells:
        for size in args.sizes:
            ms = layer_floor(cell, size, args.repeats, CLOCKS[args.clock])
            print(f"| {cell:>4} | {size:>7} | " + " | ".join(f"{v:.2f}" for v in ms.values())
                  + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
