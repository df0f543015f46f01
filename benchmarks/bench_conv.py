"""Time and measure one training step of convnets: minidl against torch.nn + autograd +
torch.optim, and against a raw hand-inlined loop of torch ops (the floor for this design).

Networks (cross-entropy on 10 classes; the step: forward, loss, backward, update, zero_grad):

    digits   1×8×8:   conv 3×3 16 → ReLU → max pool 2 → conv 3×3 32 → ReLU → flatten
                      → linear 10; SGD momentum 0.9; batch 32
    lenet    1×28×28: LeNet-5: conv 5×5 6 (padding 2) → ReLU → max pool 2 → conv 5×5 16
                      → ReLU → max pool 2 → flatten → 120 → ReLU → 84 → ReLU → 10; Adam;
                      batches 64 and 256
    vgg      3×32×32: a VGG block: conv 3×3 64 (padding 1; no bias, as batch norm removes
                      it) → batch norm → ReLU → conv 3×3 64 (padding 1) → max pool 2 →
                      flatten → linear 10; Adam; batch 128
    mnist1d  1×40:    MNIST-1D's convnet, configs/mnist1d-cnn.yaml: conv1d k5 stride 2 25
                      → ReLU → conv1d k3 stride 2 25 → ReLU → conv1d k3 stride 2 25 → ReLU
                      → flatten → linear 10 (padding 1, as the data set's reference code);
                      Adam; batch 100. torch.nn.Conv1d is the twin; the raw loop runs
                      conv1d and its two gradients as minidl's Conv1d writes them.

All three start from the same weights (torch.nn's initialisation) and see the same batches;
before anything is timed they run 10 float64 steps per network and must end with the same
weights (1e-10). Times are interleaved, best of N, on the thread's CPU time with one
intra-op thread (`--clock wall` for elapsed time; `--threads 2` switches to wall time).

Memory: the peak resident set of a fresh process that runs three steps of one
implementation, minus the process's resident set just before that model was built. One
step of a throw-away copy runs first (loading code, starting thread pools, compiling
oneDNN's kernels for these shapes), its memory is freed and handed back to the system
(malloc_trim), and the peak is reset through /proc/self/clear_refs: neither importing
torch nor first-use costs count. It is what a step holds at its fullest: activations
kept for backward, gradients, optimizer state, temporaries, and whatever the allocator
keeps mapped. torch's own CPU
allocator keeps no statistics, and tracemalloc cannot see tensor memory, so RSS it is.

    python benchmarks/bench_conv.py                          # every network, ~5 min
    python benchmarks/bench_conv.py --cases lenet --repeats 9 --no-memory
    python benchmarks/bench_conv.py --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import CLOCKS, STEPS_PER_EPOCH, print_header  # noqa: E402

from minidl_cli import __version__, nn, optim  # noqa: E402
from minidl_cli.nn.conv import transposed_output_padding, weight_gradient  # noqa: E402

CLASSES = 10
LR_SGD, MOMENTUM = 0.05, 0.9
LR_ADAM, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


def digits(m) -> list:
    return [m.Conv2d(1, 16, 3), m.ReLU(), m.MaxPool2d(2), m.Conv2d(16, 32, 3), m.ReLU(),
            m.Flatten(), m.Linear(32, CLASSES)]


def lenet(m) -> list:
    return [m.Conv2d(1, 6, 5, padding=2), m.ReLU(), m.MaxPool2d(2), m.Conv2d(6, 16, 5),
            m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(400, 120), m.ReLU(),
            m.Linear(120, 84), m.ReLU(), m.Linear(84, CLASSES)]


def vgg(m) -> list:
    return [m.Conv2d(3, 64, 3, padding=1, bias=False), m.BatchNorm2d(64), m.ReLU(),
            m.Conv2d(64, 64, 3, padding=1), m.MaxPool2d(2), m.Flatten(),
            m.Linear(64 * 16 * 16, CLASSES)]


def mnist1d(m) -> list:
    return [m.Conv1d(1, 25, 5, stride=2, padding=1), m.ReLU(),
            m.Conv1d(25, 25, 3, stride=2, padding=1), m.ReLU(),
            m.Conv1d(25, 25, 3, stride=2, padding=1), m.ReLU(),
            m.Flatten(), m.Linear(25 * 5, CLASSES)]


# name -> (layers, input shape, batches timed, optimizer)
CASES = {
    "digits": (digits, (1, 8, 8), (32,), "sgd"),
    "lenet": (lenet, (1, 28, 28), (64, 256), "adam"),
    "vgg": (vgg, (3, 32, 32), (128,), "adam"),
    "mnist1d": (mnist1d, (1, 40), (100,), "adam"),
}


def image_data(case: str, n: int, dtype: torch.dtype, seed: int = 0):
    """Random inputs and labels (a step's cost does not depend on the pixels).

    Shape: x (n, *the case's input shape), labels (n,) int64.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *CASES[case][1], generator=gen, dtype=torch.float64)
    return x.to(dtype), torch.randint(0, CLASSES, (n,), generator=gen)


def batches_of(x, labels, batch: int) -> list:
    return [(x[i:i + batch], labels[i:i + batch]) for i in range(0, len(x), batch)]


def initial_weights(case: str, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """torch.nn's default initialisation of the case's network, as a state dict."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(*CASES[case][0](torch.nn))
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}


class Minidl:
    """minidl's public API, as a user writes the loop."""

    name = "minidl"

    def __init__(self, case: str, weights: dict[str, torch.Tensor]):
        dtype = next(iter(weights.values())).dtype
        self.net = nn.Sequential(*CASES[case][0](nn)).to(dtype=dtype)
        self.net.load_state_dict(weights)
        self.loss_fn = nn.CrossEntropyLoss()
        params = self.net.parameters()
        self.opt = (optim.SGD(params, lr=LR_SGD, momentum=MOMENTUM)
                    if CASES[case][3] == "sgd" else optim.Adam(params, lr=LR_ADAM))

    def steps(self, batches) -> None:
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
    """torch.nn + autograd + torch.optim with their defaults."""

    name = "torch.nn"

    def __init__(self, case: str, weights: dict[str, torch.Tensor]):
        dtype = next(iter(weights.values())).dtype
        self.net = torch.nn.Sequential(*CASES[case][0](torch.nn)).to(dtype=dtype)
        self.net.load_state_dict(weights)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        params = self.net.parameters()
        self.opt = (torch.optim.SGD(params, lr=LR_SGD, momentum=MOMENTUM)
                    if CASES[case][3] == "sgd" else torch.optim.Adam(params, lr=LR_ADAM))

    def steps(self, batches) -> None:
        net, loss_fn, opt = self.net, self.loss_fn, self.opt
        for xb, yb in batches:
            loss_fn(net(xb), yb).backward()
            opt.step()
            opt.zero_grad()

    def weights(self) -> list[torch.Tensor]:
        return [v.detach() for v in self.net.state_dict().values()]


class Raw:
    """The step hand-inlined in raw torch ops: per layer a forward and a backward closure
    (no Module, Loss or Optimizer objects), gradients written once (no zero_grad), the
    update inlined, no input gradient for the first layer, in-place wherever it is safe.
    The same formulas as minidl's layers: what minidl's structure costs is minidl / raw."""

    name = "raw"

    def __init__(self, case: str, weights: dict[str, torch.Tensor]):
        self.adam = CASES[case][3] == "adam"
        self.state = {k: v.clone() for k, v in weights.items()}
        self.params = [(v, torch.zeros_like(v), torch.zeros_like(v), torch.zeros_like(v))
                       for k, v in self.state.items() if k.endswith(("weight", "bias"))]
        self.grads = {id(p): grad for p, grad, _, _ in self.params}
        self.layers = [self._layer(str(i), m) for i, m in
                       enumerate(CASES[case][0](torch.nn))]
        self.t = 0

    def _layer(self, i: str, m: torch.nn.Module):
        """(forward, backward) closures of layer `i` of the network, `m` its torch.nn twin;
        backward(g, need_dx) writes the parameter gradients into self.grads."""
        for kind, raw in RAW_LAYERS.items():
            if isinstance(m, kind):
                return raw(m, self.state, i, self.grads)
        raise TypeError(f"no raw version of {m}")

    def steps(self, batches) -> None:
        layers = self.layers
        with torch.no_grad():
            for xb, yb in batches:
                for forward, _ in layers:
                    xb = forward(xb)
                g = torch.softmax(xb, 1)  # dL/dlogits = (softmax − one-hot) / N
                g[torch.arange(len(yb)), yb] -= 1
                g = g.div_(len(yb))
                for j in range(len(layers) - 1, -1, -1):
                    g = layers[j][1](g, j > 0)
                self._update()

    def _update(self) -> None:
        self.t += 1
        if not self.adam:
            for p, grad, buf, _ in self.params:  # v ← μ v + g; p ← p − lr v
                p.sub_(buf.mul_(MOMENTUM).add_(grad), alpha=LR_SGD)
            return
        (b1, b2), t = BETAS, self.t
        step, root = LR_ADAM / (1 - b1 ** t), math.sqrt(1 - b2 ** t)
        for p, grad, m, v in self.params:  # m, v: moving averages of g and g²
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(root).add_(EPS), value=-step)

    def weights(self) -> list[torch.Tensor]:
        return list(self.state.values())


# Raw's layers: each gives (forward, backward) closures over the network's state `s` (tensors
# by state-dict key), writing parameter gradients into `grads` (by id of the parameter).

def _raw_conv2d(m: torch.nn.Conv2d, s: dict, i: str, grads: dict):
    saved = {}
    w, b = s[i + ".weight"], s.get(i + ".bias")
    geometry = (m.kernel_size, m.stride, m.padding, m.dilation)

    def forward(x):
        saved["x"] = x
        return F.conv2d(x, w, b, m.stride, m.padding)

    def backward(g, need_dx):
        x = saved["x"]
        if b is not None:
            torch.sum(g, (0, 2, 3), out=grads[id(b)])  # Σ g
        grads[id(w)].copy_(weight_gradient(x, g, *geometry, 1))  # x ⋆ g
        if need_dx:
            extra = transposed_output_padding(x.shape[2:], g.shape[2:], *geometry)
            return F.conv_transpose2d(g, w, None, m.stride, m.padding, extra)
        return None

    return forward, backward


def _raw_conv1d(m: torch.nn.Conv1d, s: dict, i: str, grads: dict):
    saved = {}
    w, b = s[i + ".weight"], s.get(i + ".bias")
    (k,), (stride,), (padding,), (dilation,) = m.kernel_size, m.stride, m.padding, m.dilation

    def forward(x):
        saved["x"] = x
        return F.conv1d(x, w, b, stride, padding)

    def backward(g, need_dx):
        x = saved["x"]
        if b is not None:
            torch.sum(g, (0, 2), out=grads[id(b)])  # Σ g
        grads[id(w)].copy_(weight_gradient(x.unsqueeze(2), g.unsqueeze(2), (1, k), (1, stride),
                                           (0, padding), (1, dilation), 1).squeeze(2))  # x ⋆ g
        if need_dx:
            (extra,) = transposed_output_padding(x.shape[2:], g.shape[2:], (k,), (stride,),
                                                 (padding,), (dilation,))
            return F.conv_transpose1d(g, w, None, stride, padding, extra)
        return None

    return forward, backward


def _raw_linear(m: torch.nn.Linear, s: dict, i: str, grads: dict):
    saved = {}
    w, b = s[i + ".weight"], s[i + ".bias"]

    def forward(x):
        saved["x"] = x
        return torch.addmm(b, x, w.t())

    def backward(g, need_dx):
        torch.mm(g.t(), saved["x"], out=grads[id(w)])  # gᵀ x
        torch.sum(g, 0, out=grads[id(b)])
        return g.mm(w) if need_dx else None

    return forward, backward


def _raw_relu(m: torch.nn.ReLU, s: dict, i: str, grads: dict):
    saved = {}

    def forward(x):
        saved["y"] = y = torch.relu(x)
        return y

    def backward(g, need_dx):
        return saved["y"].sign_().mul_(g)  # the next layer's backward is done with y

    return forward, backward


def _raw_max_pool2d(m: torch.nn.MaxPool2d, s: dict, i: str, grads: dict):
    saved = {}

    def forward(x):
        saved["shape"] = x.shape
        out, saved["argmax"] = F.max_pool2d(x, m.kernel_size, m.stride, m.padding,
                                            return_indices=True)
        return out

    def backward(g, need_dx):
        n, c, h, w = saved["shape"]
        dx = g.new_zeros(n, c, h * w)
        return dx.scatter_add_(2, saved["argmax"].flatten(2), g.flatten(2)).view(n, c, h, w)

    return forward, backward


def _raw_flatten(m: torch.nn.Flatten, s: dict, i: str, grads: dict):
    saved = {}

    def forward(x):
        saved["shape"] = x.shape
        return x.flatten(1)

    def backward(g, need_dx):
        return g.view(saved["shape"])

    return forward, backward


def _raw_batch_norm2d(m: torch.nn.BatchNorm2d, s: dict, i: str, grads: dict):
    saved = {}
    gamma, beta = s[i + ".weight"], s[i + ".bias"]
    mean_r, var_r, count = (s[i + k] for k in (".running_mean", ".running_var",
                                               ".num_batches_tracked"))

    def forward(x):
        x3 = x.flatten(2)
        k = x3.shape[0] * x3.shape[2]
        mean = x3.sum(2).sum(0) / k
        dot = torch.bmm(x3.reshape(-1, 1, x3.shape[2]), x3.reshape(-1, x3.shape[2], 1))
        var = dot.view(x3.shape[:2]).sum(0) / k - mean * mean
        count.add_(1)
        mean_r.mul_(1 - m.momentum).add_(mean, alpha=m.momentum)
        var_r.mul_(1 - m.momentum).add_(var * (k / (k - 1)), alpha=m.momentum)
        invstd = torch.rsqrt(var + m.eps)
        scale = gamma * invstd
        saved.update(x=x, mean=mean, invstd=invstd, k=k)
        return torch.addcmul((beta - mean * scale).view(1, -1, 1, 1), x,
                             scale.view(1, -1, 1, 1))

    def backward(g, need_dx):
        x, mean, invstd, k = saved["x"], saved["mean"], saved["invstd"], saved["k"]
        g3, x3 = g.flatten(2), x.flatten(2)
        g_sum = torch.sum(g3.sum(2), 0, out=grads[id(beta)])
        dot = torch.bmm(g3.reshape(-1, 1, g3.shape[2]), x3.reshape(-1, x3.shape[2], 1))
        g_xhat = grads[id(gamma)]
        torch.mul(dot.view(g3.shape[:2]).sum(0) - mean * g_sum, invstd, out=g_xhat)
        a = gamma * invstd
        b = -a * invstd * g_xhat / k
        c = -a * g_sum / k - mean * b
        return torch.addcmul(c.view(1, -1, 1, 1), x, b.view(1, -1, 1, 1)).addcmul_(
            g, a.view(1, -1, 1, 1))

    return forward, backward


RAW_LAYERS = {torch.nn.Conv2d: _raw_conv2d, torch.nn.Conv1d: _raw_conv1d,
              torch.nn.Linear: _raw_linear,
              torch.nn.ReLU: _raw_relu, torch.nn.MaxPool2d: _raw_max_pool2d,
              torch.nn.Flatten: _raw_flatten, torch.nn.BatchNorm2d: _raw_batch_norm2d}


IMPLEMENTATIONS = [Minidl, TorchNN, Raw]


def check_agreement(case: str = "digits", batch: int = 4, steps: int = 10) -> float:
    """Max relative weight difference of the three after `steps` float64 steps (~1e-15)."""
    x, labels = image_data(case, steps * batch, torch.float64)
    weights = initial_weights(case, torch.float64)
    impls = [cls(case, weights) for cls in IMPLEMENTATIONS]
    for impl in impls:
        impl.steps(batches_of(x, labels, batch))
    worst = 0.0
    for other in impls[1:]:
        for a, b in zip(impls[0].weights(), other.weights(), strict=True):
            scale = b.abs().max().clamp_min(1e-300)
            worst = max(worst, ((a.double() - b.double()).abs().max() / scale).item())
    return worst


def best_step(impls: list, batches: list, repeats: int, budget_s: float,
              clock) -> dict[str, float]:
    """{name: best seconds per step}: rounds in a rotating order, each measurement as many
    steps as fit in about `budget_s` (at least one)."""
    for impl in impls:  # warm up: one-time allocations, kernel choices
        impl.steps(batches[:2])
    start = clock()
    impls[1].steps(batches[:1])
    count = max(1, min(len(batches), round(budget_s / max(clock() - start, 1e-6))))
    best = {impl.name: math.inf for impl in impls}
    for r in range(repeats):
        for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
            chunk = batches[(r * count) % len(batches):][:count]
            start = clock()
            impl.steps(chunk)
            best[impl.name] = min(best[impl.name], (clock() - start) / len(chunk))
    return best


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(case: str, batch: int, impl_name: str) -> None:
    """Print the peak RSS above the resting RSS of three steps of one implementation."""
    cls = next(cls for cls in IMPLEMENTATIONS if cls.name == impl_name)
    weights = initial_weights(case, torch.float32)
    x, labels = image_data(case, 3 * batch, torch.float32)
    batches = batches_of(x, labels, batch)
    cls(case, weights).steps(batches[:1])  # load code, start thread pools, compile kernels
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # hand the warm-up's freed memory back to the system
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS now
    resting = status_kb("VmRSS")
    cls(case, weights).steps(batches)
    print((status_kb("VmHWM") - resting) / 1024)


def peak_mb(case: str, batch: int, impl_name: str, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--memory-child", case, str(batch),
                          impl_name, "--threads", str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--batch", type=int, help="one batch size for every case")
    parser.add_argument("--repeats", type=int, default=7, help="best of this many (default 7)")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds per measurement (default 0.3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: the thread's CPU time (default); wall: elapsed time")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--memory-child", nargs=3, metavar=("CASE", "BATCH", "IMPL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        case, batch, impl_name = args.memory_child
        memory_child(case, int(batch), impl_name)
        return 0
    if torch.get_num_threads() > 1 and args.clock == "cpu":
        args.clock = "wall"  # the CPU time of the calling thread misses the other threads' work

    if not all_agree(args.cases):
        return 1
    print(f"minidl {__version__}, torch {torch.__version__}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, "
          f"float32, {args.clock} time, best of {args.repeats}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print()
    print_header("| network | batch | minidl ms | torch.nn ms | raw ms | torch.nn / minidl "
                 "| minidl / raw | minidl MB | torch.nn MB | raw MB | minidl / torch.nn MB |")
    missed = []
    for case in args.cases:
        for batch in [args.batch] if args.batch else CASES[case][2]:
            missed += table_row(case, batch, args)
    print()
    print("targets: torch.nn / minidl ≥ 1.0; peak memory ≤ 1.5× torch.nn's")
    for line in missed:
        print(f"  missed: {line}")
    print("  all met" if not missed else "")
    return 0


def all_agree(cases: list[str]) -> bool:
    """Print each case's float64 agreement; False (and an error) when one disagrees."""
    for case in cases:
        worst = check_agreement(case)
        print(f"{case}: float64 agreement after 10 steps (max rel. weight difference): "
              f"{worst:.1e}")
        if worst > 1e-10:
            print(f"error: {case}: the implementations disagree; the timings would compare "
                  "different work", file=sys.stderr)
            return False
    return True


def table_row(case: str, batch: int, args: argparse.Namespace) -> list[str]:
    """Measure one network at one batch size, print its table row; the targets it missed."""
    x, labels = image_data(case, STEPS_PER_EPOCH * batch, torch.float32)
    weights = initial_weights(case, torch.float32)
    impls = [cls(case, weights) for cls in IMPLEMENTATIONS]
    ms = {k: v * 1e3 for k, v in best_step(impls, batches_of(x, labels, batch), args.repeats,
                                           args.budget, CLOCKS[args.clock]).items()}
    del impls
    speed = ms["torch.nn"] / ms["minidl"]
    mb = {name: math.nan for name in ms}
    if not args.no_memory:
        mb = {cls.name: peak_mb(case, batch, cls.name, args.threads) for cls in IMPLEMENTATIONS}
    memory = mb["minidl"] / mb["torch.nn"]
    print(f"| {case:>7} | {batch:>5} | {ms['minidl']:>9.2f} | {ms['torch.nn']:>11.2f} "
          f"| {ms['raw']:>6.2f} | {speed:>16.2f}× | {ms['minidl'] / ms['raw']:>11.2f}× "
          f"| {mb['minidl']:>9.1f} | {mb['torch.nn']:>11.1f} | {mb['raw']:>6.1f} "
          f"| {memory:>19.2f}× |", flush=True)
    missed = []
    if speed < 1.0:
        missed.append(f"{case}, batch {batch}: torch.nn / minidl = {speed:.2f} < 1.0")
    if memory > 1.5:
        missed.append(f"{case}, batch {batch}: minidl's peak memory {memory:.2f}× "
                      "torch.nn's > 1.5")
    return missed


if __name__ == "__main__":
    sys.exit(main())
