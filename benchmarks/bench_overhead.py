"""What minidl's modules cost: its public API against its own ops inlined into one loop.

bench_step.py compares minidl with a raw loop that does *different* work (no gradient
buffers, no optimizer, no first-layer input gradient, in-place ops). This script adds a
third loop, `inlined`: exactly the torch ops minidl runs for the reference step, in the
same order, into the same packed buffers, with no Module, Sequential, Loss or Optimizer
call in between. So

    minidl / inlined   is the cost of the Python structure (calls, attribute lookups),
    inlined / raw      is the cost of minidl's choice of ops against the raw loop.

It keeps the inlined loop honest the same way bench_step.py does: all three must agree to
1e-10 after 30 float64 steps before anything is timed. When minidl's ops change, change
`Inlined.epoch` to match (the agreement check fails loudly if the maths differs).

    python benchmarks/bench_overhead.py              # width 25, batch 100, best of 41
    python benchmarks/bench_overhead.py --repeats 31 --widths 25 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn.functional import linear

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step  # noqa: E402  (bench_step puts the checkout on sys.path)
from bench_step import LR, Minidl, Raw  # noqa: E402


class Inlined(Minidl):
    """minidl's ops for the reference step, in one function, on the same packed buffers."""

    name = "inlined"

    def epoch(self, batches) -> None:
        linears = self.net.layers[0::2]
        params = [(m.weight.data, m.weight.grad, m.bias.data, m.bias.grad) for m in linears]
        (w1, gw1, b1, gb1), (w2, gw2, b2, gb2), (w3, gw3, b3, gb3), (w4, gw4, b4, gb4) = params
        flat_w, flat_g = self.opt.packed.data, self.opt.packed.grad
        ones = None
        with torch.no_grad():
            for x, y in batches:
                if ones is None or ones.size(0) != x.size(0):
                    ones = x.new_ones(x.size(0))
                h1 = torch.relu(linear(x, w1, b1))
                h2 = torch.relu(linear(h1, w2, b2))
                h3 = torch.relu(linear(h2, w3, b3))
                out = torch.tanh(linear(h3, w4, b4))
                diff = torch.sub(out, y)
                diff.square().mean()
                g = diff * (2.0 * (1.0 / diff.numel()))
                g = torch.addcmul(g, g, out.square(), value=-1)
                for w, gw, gb, h in ((w4, gw4, gb4, h3), (w3, gw3, gb3, h2), (w2, gw2, gb2, h1)):
                    g_t = g.t()
                    gw.addmm_(g_t, h)
                    gb.addmv_(g_t, ones)
                    g = h.sign().mul_(g.mm(w))
                g_t = g.t()
                gw1.addmm_(g_t, x)
                gb1.addmv_(g_t, ones)  # no dL/dx for the data (backward_params)
                flat_w.add_(flat_g, alpha=-LR)
                flat_g.zero_()


CLASSES = [Minidl, Inlined, Raw]


def check_agreement_of_all() -> float:
    """Max relative weight difference of minidl, Inlined and Raw after 30 float64 steps."""
    return bench_step.check_agreement(classes=CLASSES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[25])
    parser.add_argument("--batches", type=int, nargs="+", default=[100])
    parser.add_argument("--repeats", type=int, default=41, help="best of this many (default 41)")
    parser.add_argument("--budget", type=float, default=0.02,
                        help="seconds per measurement (default 0.02)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if not bench_step.agreed(check_agreement_of_all(), "the inlined loop no longer does "
                             "minidl's maths; update Inlined.epoch"):
        return 1
    print(f"torch {torch.__version__}, threads=1, float32, thread CPU time, "
          f"best of {args.repeats}\n")
    header = ("| width | batch | minidl µs | inlined µs | raw µs "
              "| minidl / inlined | inlined / raw |")
    bench_step.print_header(header)
    for width in args.widths:
        for batch in args.batches:
            t = bench_step.bench(width, batch, args.repeats, args.budget, classes=CLASSES)
            us = {k: v * 1e6 for k, v in t.items()}
            print(f"| {width:>5} | {batch:>5} | {us['minidl']:>9.1f} | {us['inlined']:>10.1f} "
                  f"| {us['raw']:>6.1f} | {us['minidl'] / us['inlined']:>15.2f}× "
                  f"| {us['inlined'] / us['raw']:>12.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
