"""Time one training step of configs/shakespeare-gpt.yaml: minidl against the same GPT in torch.nn.

The model is the config's (token embedding, positional embedding, 4 × [residual(layer norm →
causal self-attention), residual(layer norm → linear → GELU → linear)], layer norm, linear
head; 4 heads, 128 wide, context 64, batch 12, 65 characters), the step: forward,
cross-entropy over every position, backward, AdamW. Three implementations, side by side in
one process, from the same weights on the same batches:

- minidl:         the config's model as minidl builds it (build_layers), nn.CrossEntropyLoss,
                  optim.AdamW: every backward written out by hand;
- torch.nn plain: the same GPT written in torch.nn with attention computed the plain way
                  (Q Kᵀ / √d, a causal mask, softmax, times V), autograd, torch.optim.AdamW;
- torch.nn fused: minidl's `to_torch()` twin, whose torch.nn.MultiheadAttention calls
                  scaled_dot_product_attention (one fused kernel for the attention).

Before timing, the three run three float64 steps from the same weights and must agree to
1e-10. Times are the best of N interleaved rounds of the thread's CPU time (one thread) or
of wall time (two threads), as bench_step.py measures. Peak memory: the growth of the
process's maximum resident set over the steps, each implementation in a fresh process.

    python benchmarks/bench_gpt.py
    python benchmarks/bench_gpt.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidl_cli import __version__, nn, optim  # noqa: E402
from minidl_cli.build import build_layers  # noqa: E402

CONFIG = ROOT / "configs" / "shakespeare-gpt.yaml"
VOCAB, BATCH, T = 65, 12, 64
LR, BETAS, DECAY = 1e-3, (0.9, 0.99), 0.1


def model_config() -> list:
    model = yaml.safe_load(CONFIG.read_text())["model"]
    model[0] = {**model[0], "num_embeddings": VOCAB}  # what a run reads off the vocabulary
    return model


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, VOCAB, (BATCH, T), generator=gen),
             torch.randint(0, VOCAB, (BATCH, T), generator=gen)) for _ in range(n)]


class Minidl:
    name = "minidl"

    def __init__(self, state: dict, dtype: torch.dtype):
        self.net = build_layers(model_config(), (T,))[0].to(dtype)
        self.net.load_state_dict(state)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = optim.AdamW(self.net.parameters(), lr=LR, betas=BETAS, weight_decay=DECAY)

    def steps(self, data) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        with torch.inference_mode():
            for x, y in data:
                opt.zero_grad()
                loss_fn(net(x), y)
                net.backward(loss_fn.backward())
                opt.step()

    def weights(self) -> list[torch.Tensor]:
        return list(self.net.state_dict().values())


class PlainAttention(torch.nn.Module):
    """Causal multi-head self-attention the plain way, MultiheadAttention's weight layout."""

    def __init__(self, E: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * E, E))
        self.in_proj_bias = torch.nn.Parameter(torch.empty(3 * E))
        self.out_proj = torch.nn.Linear(E, E)

    def forward(self, x):
        N, L, E = x.shape
        q, k, v = (t.reshape(N, L, self.heads, -1).transpose(1, 2) for t in
                   torch.nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
                   .split(E, 2))
        scores = q @ k.transpose(2, 3) / math.sqrt(E // self.heads)
        mask = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
        p = torch.softmax(scores.masked_fill(mask, float("-inf")), -1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(N, L, E))


class Torch:
    def __init__(self, state: dict, dtype: torch.dtype, plain: bool):
        self.name = "torch.nn plain" if plain else "torch.nn fused"
        twin = build_layers(model_config(), (T,))[0].to_torch()
        if plain:  # swap each MultiheadAttention for the plain one (the same keys)
            for block in twin[2]:  # the repeat's copies: [residual(attention), residual(mlp)]
                attention = block[0].body[1]
                block[0].body[1] = PlainAttention(attention.embed_dim, attention.num_heads)
        self.net = twin.to(dtype)
        self.net.load_state_dict(state)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=LR, betas=BETAS,
                                     weight_decay=DECAY)

    def steps(self, data) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        for x, y in data:
            opt.zero_grad()
            loss = loss_fn(net(x).flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()

    def weights(self) -> list[torch.Tensor]:
        return [v.detach() for v in self.net.state_dict().values()]


def implementations(dtype: torch.dtype, seed: int = 0) -> list:
    torch.manual_seed(seed)
    state = build_layers(model_config(), (T,))[0].to(dtype).state_dict()
    return [Minidl(state, dtype), Torch(state, dtype, plain=True), Torch(state, dtype, False)]


def check_agreement() -> float:
    impls = implementations(torch.float64)
    data = batches(3)
    for impl in impls:
        impl.steps(data)
    worst = 0.0
    for other in impls[1:]:
        for a, b in zip(impls[0].weights(), other.weights(), strict=True):
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item())
    return worst


def peak_memory_mb(index: int, steps: int = 5) -> float:
    """The peak resident set during `steps` steps of implementation `index` above the
    resident set before the first, in a fresh process (MiB): what the steps need beyond the
    model (activations kept for backward, gradients, the optimizer's state)."""
    code = (f"import sys, os; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import "
            f"bench_gpt, torch, resource; torch.set_num_threads(1); i = bench_gpt."
            f"implementations(torch.float32)[{index}]; d = bench_gpt.batches({steps}); "
            "r = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'); "
            "i.steps(d); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - r)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip()) / 2**20  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="best of this many (default 5)")
    parser.add_argument("--steps", type=int, default=5, help="steps per measurement")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    worst = check_agreement()
    print(f"float64 agreement after 3 steps (max rel. weight difference): {worst:.1e}")
    if worst > 1e-10:
        print("error: the implementations disagree", file=sys.stderr)
        return 1
    print(f"minidl {__version__}, torch {torch.__version__}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, "
          f"float32, {'cpu' if args.threads == 1 else 'wall'} time, best of {args.repeats}")
    impls = implementations(torch.float32)
    data = batches(args.steps)
    for impl in impls:
        impl.steps(data[:1])  # warm up
    best = {impl.name: math.inf for impl in impls}
    for r in range(args.repeats):
        for impl in impls[r % 3:] + impls[:r % 3]:
            started = clock()
            impl.steps(data)
            best[impl.name] = min(best[impl.name], (clock() - started) / args.steps)
    memory = {impl.name: peak_memory_mb(i, args.steps) for i, impl in enumerate(impls)}
    print()
    print("| implementation | ms/step | minidl speed-up | peak memory above the model, MiB |")
    print("|---|---|---|---|")
    for impl in impls:
        ms = best[impl.name] * 1e3
        print(f"| {impl.name} | {ms:.1f} | {best[impl.name] / best['minidl']:.2f}× "
              f"| {memory[impl.name]:.1f} |")
    ratio = best["torch.nn plain"] / best["minidl"]
    print()
    print(f"target: torch.nn plain / minidl ≥ 1.0: {'met' if ratio >= 1 else 'missed'} "
          f"({ratio:.2f}); torch.nn fused / minidl = {best['torch.nn fused'] / best['minidl']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
