"""Time one training step of a small convnet: minidl against torch.nn + autograd + torch.optim.

The network is LeNet-style, on inputs the size of the 8×8 handwritten digits:

    conv 3×3, 16 → ReLU → max pool 2 → conv 3×3, 32 → ReLU → flatten → linear 10

with cross-entropy and SGD (momentum 0.9). The step: forward, loss, backward, update,
zero_grad. Both implementations start from the same weights and see the same batches
(bench_step.py's shuffling: one randperm and one gather per epoch, then slices); before
anything is timed they run 30 steps in float64 and must end with the same weights (1e-10).
Measurements are interleaved, best of N, on the thread's CPU time with one intra-op thread
(--clock wall for elapsed time), as in bench_step.py.

    python benchmarks/bench_conv.py                  # batch 32, best of 15
    python benchmarks/bench_conv.py --batches 32 128 --repeats 21
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

LR, MOMENTUM = 0.05, 0.9
IMAGE = (1, 8, 8)  # the digits' size: one channel, 8×8 pixels
CLASSES = 10


def image_data(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and labels (the step's cost does not depend on the pixels).

    Shape: x (n, 1, 8, 8), labels (n,) int64.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *IMAGE, generator=gen, dtype=torch.float64)
    return x.to(dtype), torch.randint(0, CLASSES, (n,), generator=gen)


def layers(module) -> list:
    """The convnet's layers from a module namespace: minidl_cli.nn or torch.nn."""
    return [module.Conv2d(1, 16, 3), module.ReLU(), module.MaxPool2d(2),
            module.Conv2d(16, 32, 3), module.ReLU(), module.Flatten(), module.Linear(32, CLASSES)]


def initial_weights(dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """torch.nn's default initialisation of the convnet, as a state dict."""
    torch.manual_seed(seed)
    return {k: v.to(dtype) for k, v in torch.nn.Sequential(*layers(torch.nn)).state_dict().items()}


class Minidl:
    """minidl's public API, as a user writes the loop."""

    name = "minidl"

    def __init__(self, weights: dict[str, torch.Tensor]):
        dtype = next(iter(weights.values())).dtype
        self.net = nn.Sequential(*layers(nn)).to(dtype=dtype)
        self.net.load_state_dict(weights)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)

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
    """torch.nn + autograd + torch.optim.SGD with their defaults."""

    name = "torch.nn"

    def __init__(self, weights: dict[str, torch.Tensor]):
        dtype = next(iter(weights.values())).dtype
        self.net = torch.nn.Sequential(*layers(torch.nn)).to(dtype=dtype)
        self.net.load_state_dict(weights)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)

    def epoch(self, batches) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        for xb, yb in batches:
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return [v.detach() for v in self.net.state_dict().values()]


IMPLEMENTATIONS = [Minidl, TorchNN]


def check_agreement(batch: int = 32, epochs: int = 3) -> float:
    """Max relative weight difference after `epochs` × 10 float64 steps (must be ~1e-15)."""
    x, labels = image_data(STEPS_PER_EPOCH * batch, torch.float64)
    weights = initial_weights(torch.float64)
    impls = [cls(weights) for cls in IMPLEMENTATIONS]
    for e in range(epochs):
        batches = epoch_batches(x, labels, batch, torch.Generator().manual_seed(e))
        for impl in impls:
            impl.epoch(batches)
    worst = 0.0
    for a, b in zip(impls[0].weights(), impls[1].weights(), strict=True):
        worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item())
    return worst


def bench(batch: int, repeats: int, budget_s: float, clock) -> dict[str, float]:
    """Best seconds/step of each implementation, interleaved in a rotating order."""
    data = image_data(STEPS_PER_EPOCH * batch, torch.float32)
    weights = initial_weights(torch.float32)
    impls = [cls(weights) for cls in IMPLEMENTATIONS]
    return best_of(impls, data, batch, repeats, budget_s, clock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32])
    parser.add_argument("--repeats", type=int, default=15, help="best of this many (default 15)")
    parser.add_argument("--budget", type=float, default=0.05,
                        help="seconds per measurement (default 0.05)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: the thread's CPU time (default); wall: elapsed time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if torch.get_num_threads() > 1 and args.clock == "cpu":
        args.clock = "wall"  # the CPU time of the calling thread misses the other threads' work

    if not agreed(check_agreement(),
                  "minidl and torch.nn disagree; the timings would compare different work"):
        return 1
    print(f"minidl {__version__}, torch {torch.__version__}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, "
          f"float32, {args.clock} time, best of {args.repeats}")
    print(f"network: {' → '.join(type(m).__name__ for m in layers(nn))}, input {IMAGE}, "
          f"cross-entropy, SGD momentum {MOMENTUM}")
    print()
    print_header("| batch | minidl µs/step | torch.nn µs/step | torch.nn / minidl |")
    missed = []
    for batch in args.batches:
        us = {k: v * 1e6 for k, v in bench(batch, args.repeats, args.budget,
                                           CLOCKS[args.clock]).items()}
        speedup = us["torch.nn"] / us["minidl"]
        print(f"| {batch:>5} | {us['minidl']:>14.1f} | {us['torch.nn']:>16.1f} "
              f"| {speedup:>16.2f}× |", flush=True)
        if speedup < 1.0:
            missed.append(f"batch {batch}: torch.nn / minidl = {speedup:.2f} < 1.0")
    print()
    print("target: torch.nn / minidl ≥ 1.0")
    for line in missed:
        print(f"  missed: {line}")
    print("  all met" if not missed else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
