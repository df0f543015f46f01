"""Time one SGD step of minidl against torch.nn + autograd and against a raw torch loop.

The step: forward, MSE loss, backward, SGD update, zero_grad, on the reference network
shape 2 → W → W → W → 2 (ReLU between layers, Tanh after the output), for several
widths W and batch sizes. Three implementations run side by side in one process:

- minidl:   the public API exactly as a user writes it (nn.Sequential, nn.MSELoss,
            optim.SGD, net.backward_params(loss_fn.backward()): the backward of minidl's
            training loop, which skips the first layer's input gradient as autograd does).
- torch.nn: torch.nn.Sequential + autograd (loss.backward()) + torch.optim.SGD, defaults.
- raw:      the same step hand-inlined in torch ops: in-place activations and
            gradients, the gradient of each layer computed before its weight is updated
            by one fused addmm_ (and its bias by one addmv_, gᵀ·1, as minidl's Linear) —
            no gradient buffers, no zero_grad, no modules, no input gradient for the
            first layer. Its derivatives are the same plain formulas as minidl's (ReLU
            g·sign(h), Tanh g − g·y², MSE 2(x − y)/n): no backward kernel of torch's.
            minidl / raw is what the modules, gradient buffers and optimizer cost.

All three see the same data and the same batches: one shuffle (randperm) and one gather
per epoch, then slices (views) of it. Each measurement times whole epochs of one
implementation; implementations are interleaved in a rotating order and the best of
several repeats is kept. The clock is the thread's CPU time (one intra-op thread, so it
is all the work), which a busy neighbour on a shared machine does not inflate; --clock
wall measures elapsed time instead. Before timing, the three are run for a few steps in
float64 from the same weights and must agree to 1e-10.

    python benchmarks/bench_step.py                 # the table (1 thread)
    python benchmarks/bench_step.py --quick         # fewer repeats, smaller grid
    python benchmarks/bench_step.py --widths 25 --batches 100 --repeats 15
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, too

from minidl_cli import __version__, nn, optim  # noqa: E402

LR = 0.1
STEPS_PER_EPOCH = 10  # n_train = 10 × batch: every epoch is 10 steps, as in the disk run
DISK_RADIUS = 1 / math.sqrt(2 * math.pi)


# ---------------------------------------------------------------- data


def disk_data(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference experiment's data: uniform points in [0,1]², ±1 one-hot targets.

    Shape: x (n, 2), targets (n, 2).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    inside = ((x - 0.5).norm(dim=1) < DISK_RADIUS).long()
    targets = torch.nn.functional.one_hot(inside, 2).to(torch.float64) * 2 - 1
    return x.to(dtype), targets.to(dtype)


def epoch_batches(x, targets, batch, gen):
    """One shuffled epoch: one gather, then slices (views) of it."""
    order = torch.randperm(len(x), generator=gen)
    x, targets = x[order], targets[order]
    return [(x[i:i + batch], targets[i:i + batch]) for i in range(0, len(x), batch)]


# ---------------------------------------------------------------- the three implementations


def initial_weights(width: int, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """[W1, b1, …, W4, b4], torch.nn layout (out, in), Xavier-uniform weights, zero biases."""
    torch.manual_seed(seed)
    sizes = [2, width, width, width, 2]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        params += [torch.empty(fan_out, fan_in, dtype=dtype).uniform_(-bound, bound),
                   torch.zeros(fan_out, dtype=dtype)]
    return params


class Minidl:
    """minidl's public API, as a user writes the loop."""

    name = "minidl"

    def __init__(self, weights: list[torch.Tensor]):
        width = weights[0].shape[0]
        self.net = nn.Sequential(
            nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2), nn.Tanh())
        self.net.to(dtype=weights[0].dtype)
        for p, w in zip(self.net.parameters(), weights, strict=True):
            p.data.copy_(w)
        self.loss_fn = nn.MSELoss()
        self.opt = optim.SGD(self.net.parameters(), lr=LR)

    def epoch(self, batches) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        with torch.no_grad():
            for xb, yb in batches:
                loss_fn(net(xb), yb)
                net.backward_params(loss_fn.backward())  # the data needs no gradient
                opt.step()
                opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return [p.data for p in self.net.parameters()]


class TorchNN:
    """torch.nn + autograd + torch.optim.SGD with their defaults."""

    name = "torch.nn"

    def __init__(self, weights: list[torch.Tensor]):
        width = weights[0].shape[0]
        tnn = torch.nn
        self.net = tnn.Sequential(
            tnn.Linear(2, width), tnn.ReLU(), tnn.Linear(width, width), tnn.ReLU(),
            tnn.Linear(width, width), tnn.ReLU(), tnn.Linear(width, 2), tnn.Tanh())
        self.net.to(dtype=weights[0].dtype)
        with torch.no_grad():
            for p, w in zip(self.net.parameters(), weights, strict=True):
                p.copy_(w)
        self.loss_fn = tnn.MSELoss()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)

    def epoch(self, batches) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        for xb, yb in batches:
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return [p.detach() for p in self.net.parameters()]


class Raw:
    """The step hand-inlined: each layer's input gradient, then its fused in-place update."""

    name = "raw"

    def __init__(self, weights: list[torch.Tensor]):
        self.params = [w.clone() for w in weights]
        self.ones: dict[int, torch.Tensor] = {}  # batch size -> (N,) ones for the bias update

    def epoch(self, batches) -> None:
        w1, b1, w2, b2, w3, b3, w4, b4 = self.params
        with torch.no_grad():
            for x, y in batches:
                ones = self.ones.get(x.shape[0])
                if ones is None:
                    ones = self.ones[x.shape[0]] = x.new_ones(x.shape[0])
                h1 = torch.addmm(b1, x, w1.t()).clamp_min_(0)
                h2 = torch.addmm(b2, h1, w2.t()).clamp_min_(0)
                h3 = torch.addmm(b3, h2, w3.t()).clamp_min_(0)
                out = torch.addmm(b4, h3, w4.t()).tanh_()
                diff = out - y
                diff.square().mean()  # the loss value, as the others compute it
                g = diff.mul_(2.0 / diff.numel())  # dL/dout = 2 (out − y) / n
                g.addcmul_(g, out.square(), value=-1)  # dL/d(pre-tanh) = g (1 − out²)
                for w, b, h in ((w4, b4, h3), (w3, b3, h2), (w2, b2, h1)):
                    g_in = g.mm(w).mul_(h.sign())  # dL/dh = g w · 1[h > 0], before w changes
                    g_t = g.t()
                    w.addmm_(g_t, h, alpha=-LR)  # w -= lr gᵀ h
                    b.addmv_(g_t, ones, alpha=-LR)  # b -= lr gᵀ 1, as minidl's Linear
                    g = g_in
                g_t = g.t()
                w1.addmm_(g_t, x, alpha=-LR)
                b1.addmv_(g_t, ones, alpha=-LR)

    def weights(self) -> list[torch.Tensor]:
        return self.params


IMPLEMENTATIONS = [Minidl, TorchNN, Raw]


# ---------------------------------------------------------------- checks and timing


def check_agreement(width: int = 25, batch: int = 100, epochs: int = 3,
                    classes: list | None = None) -> float:
    """Max relative weight difference of the three after a few float64 epochs (must be ~1e-15)."""
    x, targets = disk_data(STEPS_PER_EPOCH * batch, torch.float64)
    weights = initial_weights(width, torch.float64)
    impls = [cls(weights) for cls in classes or IMPLEMENTATIONS]
    for e in range(epochs):
        batches = epoch_batches(x, targets, batch, torch.Generator().manual_seed(e))
        for impl in impls:
            impl.epoch(batches)
    worst = 0.0
    reference = impls[0].weights()
    for impl in impls[1:]:
        for a, b in zip(reference, impl.weights(), strict=True):
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item())
    return worst


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def time_epochs(impl, data, batch: int, epochs: int, seed: int, clock=time.thread_time) -> float:
    """Seconds per step over `epochs` epochs, shuffling included."""
    x, targets = data
    gen = torch.Generator().manual_seed(seed)
    started = clock()
    for _ in range(epochs):
        impl.epoch(epoch_batches(x, targets, batch, gen))
    return (clock() - started) / (epochs * STEPS_PER_EPOCH)


def bench(width: int, batch: int, repeats: int, budget_s: float,
          clock=time.thread_time, classes: list | None = None) -> dict[str, float]:
    """Best seconds/step of each implementation, interleaved in a rotating order."""
    data = disk_data(STEPS_PER_EPOCH * batch, torch.float32)
    weights = initial_weights(width, torch.float32)
    impls = [cls(weights) for cls in classes or IMPLEMENTATIONS]
    return best_of(impls, data, batch, repeats, budget_s, clock)


def best_of(impls: list, data, batch: int, repeats: int, budget_s: float,
            clock=time.thread_time) -> dict[str, float]:
    """{impl.name: best seconds/step} over `repeats` rounds, each round in a rotated order so
    no implementation always runs first; each measurement sized to about `budget_s`."""
    for impl in impls:  # warm up
        time_epochs(impl, data, batch, 1, 0, clock)
    slowest = max(time_epochs(impl, data, batch, 1, 0, clock) for impl in impls)
    epochs = max(1, round(budget_s / (slowest * STEPS_PER_EPOCH)))
    best = {impl.name: math.inf for impl in impls}
    for r in range(repeats):
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for impl in order:
            best[impl.name] = min(best[impl.name],
                                  time_epochs(impl, data, batch, epochs, r, clock))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[25, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=7, help="best of this many (default 7)")
    parser.add_argument("--budget", type=float, default=0.05,
                        help="seconds per measurement (default 0.05)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: the thread's CPU time, which a busy neighbour does not "
                             "inflate (default); wall: elapsed time")
    parser.add_argument("--quick", action="store_true", help="3 repeats, width 25 and 1024")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.widths = 3, [25, 1024]
    torch.set_num_threads(args.threads)
    if torch.get_num_threads() > 1 and args.clock == "cpu":
        args.clock = "wall"  # the CPU time of the calling thread misses the other threads' work

    if not agreed(check_agreement(),
                  "the implementations disagree; the timings would compare different work"):
        return 1

    print(f"minidl {__version__}, torch {torch.__version__}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, "
          f"float32, {args.clock} time, best of {args.repeats}")
    print()
    header = ("| width | batch | minidl µs/step | torch.nn µs/step | raw µs/step "
              "| torch.nn / minidl | minidl / raw |")
    print_header(header)
    failed = []
    for width in args.widths:
        for batch in args.batches:
            t = bench(width, batch, args.repeats, args.budget, CLOCKS[args.clock])
            us = {k: v * 1e6 for k, v in t.items()}
            speedup, overhead = us["torch.nn"] / us["minidl"], us["minidl"] / us["raw"]
            print(f"| {width:>5} | {batch:>5} | {us['minidl']:>14.1f} | {us['torch.nn']:>16.1f} "
                  f"| {us['raw']:>11.1f} | {speedup:>16.2f}× | {overhead:>11.2f}× |", flush=True)
            failed += targets_missed(width, batch, speedup, overhead)
    print()
    print("targets: width 25: torch.nn / minidl ≥ 2.4 and minidl / raw ≤ 1.15; "
          "width 1024: torch.nn / minidl ≥ 1")
    for line in failed:
        print(f"  missed: {line}")
    print("  all met" if not failed else "")
    return 0


def agreed(worst: float, problem: str) -> bool:
    """Print the float64 agreement; False (and `problem` on stderr) above 1e-10."""
    print(f"float64 agreement after 30 steps (max rel. weight difference): {worst:.1e}")
    if worst > 1e-10:
        print(f"error: {problem}", file=sys.stderr)
        return False
    return True


def print_header(header: str) -> None:
    """A Markdown table's header row and its |---| line."""
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")


def targets_missed(width: int, batch: int, speedup: float, overhead: float) -> list[str]:
    missed = []
    if width == 25 and batch == 100 and speedup < 2.4:
        missed.append(f"width 25, batch 100: torch.nn / minidl = {speedup:.2f} < 2.4")
    if width == 25 and batch == 100 and overhead > 1.15:
        missed.append(f"width 25, batch 100: minidl / raw = {overhead:.2f} > 1.15")
    if width == 1024 and speedup < 1.0:
        missed.append(f"width 1024, batch {batch}: minidl slower than torch.nn ({speedup:.2f})")
    return missed


if __name__ == "__main__":
    sys.exit(main())
