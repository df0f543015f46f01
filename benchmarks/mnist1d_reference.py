"""MNIST-1D's own protocol in plain torch, to set minidl's configs beside the paper's numbers.

The authors' classification notebook (Greydanus & Kobak, github.com/greydanus/mnist1d,
notebooks/train.py and models.py) trains each model with Adam (lr 1e-2), batch 100 and
6000 steps, taking batch `step` as the rows `[bix, bix + 100)` with `bix = step * 100 % 4000`:
the training set in its stored order every epoch, never reshuffled. It evaluates the test
set after steps 0, 250, ..., 6000 (its loop, `range(total_steps + 1)`, takes 6001 steps).
This script does the same with torch.nn and autograd, on the arrays of
`mnist1d.data.make_dataset(get_dataset_args())` (`pip install mnist1d`; built offline) or on
minidl's shipped copy of them (`--data minidl`), and prints per seed the last evaluation's
test accuracy and the best of the evaluations (the best is chosen on the test set, so it is
an optimistic figure, not a result). `--order reshuffle` draws a new order every epoch from
a generator seeded with the seed, as minidl's `train.shuffle: true`.

    pip install mnist1d
    python benchmarks/mnist1d_reference.py --model cnn --seeds 0-19
    python benchmarks/mnist1d_reference.py --model cnn --seeds 0-19 --order reshuffle

The models are the notebook's ConvBase, MLPBase, LinearBase and GRUBase, built after
`torch.manual_seed(seed)` with torch.nn's default initialisation (minidl's configs build the
same initial weights for a seed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

MINIDL_FILE = (Path(__file__).resolve().parents[1] / "minidl_cli" / "data" / "mnist1d"
               / "mnist1d.csv.gz")
# minidl's `shuffle_sequence` permutation: the one make_dataset draws with shuffle_seq=True
SHUFFLE = (19, 22, 4, 32, 17, 18, 28, 31, 11, 24, 23, 7, 25, 35, 34, 6, 3, 13, 12, 26,
           1, 27, 20, 10, 36, 9, 37, 29, 8, 30, 5, 38, 16, 15, 33, 39, 14, 21, 0, 2)


class ConvBase(nn.Module):
    """Three Conv1d of 25 channels (kernels 5, 3, 3, stride 2, padding 1), ReLU, Linear.

    Shape: (N, 40) -> (N, 10).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
        self.linear = nn.Linear(125, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x.unsqueeze(1)).relu()
        h = self.conv3(self.conv2(h).relu()).relu()
        return self.linear(h.flatten(1))


class MLPBase(nn.Module):
    """40 -> 100 -> 100 -> 10, the second layer residual: h = h + relu(W h + b).

    Shape: (N, 40) -> (N, 10).
    """

    def __init__(self) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(40, 100), nn.Linear(100, 100)
        self.linear3 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x).relu()
        return self.linear3(h + self.linear2(h).relu())


class GRUBase(nn.Module):
    """A bidirectional GRU of 6 units over the 40 points, all 480 outputs into a Linear.

    Shape: (N, 40) -> (N, 10).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(1, 6, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(480, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.gru(x.unsqueeze(2))[0].flatten(1))


MODELS = {"logistic": lambda: nn.Linear(40, 10), "mlp": MLPBase, "cnn": ConvBase,
          "gru": GRUBase}


def load(source: str, shuffle_seq: bool) -> tuple[np.ndarray, ...]:
    """(x, y, x_test, y_test) of the default MNIST-1D set: 4000 + 1000 signals of 40 points.

    Raises SystemExit naming the fix when `source` is "package" and mnist1d is missing.
    """
    if source == "package":
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            raise SystemExit("the mnist1d package is not installed: pip install mnist1d, "
                             "or use --data minidl") from None
        args = get_dataset_args()
        args.shuffle_seq = shuffle_seq
        d = make_dataset(args)
        return d["x"], d["y"], d["x_test"], d["y_test"]
    table = np.loadtxt(MINIDL_FILE, delimiter=",", skiprows=1)
    x, y = table[:, :40], table[:, 40].astype(np.int64)
    if shuffle_seq:
        x = x[:, list(SHUFFLE)]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def train(data: tuple[np.ndarray, ...], model: str, seed: int, steps: int = 6001,
          order: str = "sequential", eval_every: int = 250) -> dict[str, float]:
    """The notebook's train_model: `steps` Adam steps (lr 1e-2, batch 100), the test set
    evaluated after steps 0, `eval_every`, 2 `eval_every`, ... and after the last. Returns
    the last and the best test accuracy (in %) and the final test loss."""
    torch.manual_seed(seed)
    net = MODELS[model]()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, x_test = torch.tensor(data[0], dtype=torch.float32), torch.tensor(data[2],
                                                                         dtype=torch.float32)
    y, y_test = torch.as_tensor(data[1]).long(), torch.as_tensor(data[3]).long()
    shuffle, batch = torch.Generator().manual_seed(seed), 100
    xs, ys, accuracies = x, y, []
    for step in range(steps):
        start = step * batch % len(x)
        if order == "reshuffle" and start == 0:  # a new order every epoch
            perm = torch.randperm(len(x), generator=shuffle)
            xs, ys = x[perm], y[perm]
        loss = nn.functional.cross_entropy(net(xs[start:start + batch]), ys[start:start + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step + 1 == steps:
            with torch.no_grad():
                out = net(x_test)
            accuracies.append(100 * (out.argmax(1) == y_test).double().mean().item())
    test_loss = nn.functional.cross_entropy(out, y_test).item()
    return {"last": accuracies[-1], "best": max(accuracies), "test_loss": test_loss}


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="cnn")
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-19 (default 0-4)")
    parser.add_argument("--data", choices=["package", "minidl"], default="package")
    parser.add_argument("--order", choices=["sequential", "reshuffle"], default="sequential")
    parser.add_argument("--shuffle-seq", action="store_true",
                        help="the shuffled variant (make_dataset's shuffle_seq=True)")
    parser.add_argument("--steps", type=int, default=6001,
                        help="Adam steps (default 6001, as the notebook's range(6000 + 1))")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load(args.data, args.shuffle_seq)
    results = []
    for seed in seeds(args.seeds):
        r = train(data, args.model, seed, args.steps, args.order)
        results.append(r)
        print(f"seed {seed}: test accuracy last {r['last']:.2f}%, best {r['best']:.2f}%",
              flush=True)
    for key in ("last", "best"):
        values = [r[key] for r in results]
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{key}: {statistics.mean(values):.2f}% ± {std:.2f}% over {len(values)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
