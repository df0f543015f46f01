"""When does data parallelism pay? `minidl train --nproc N` against one process, by width
and batch size.

Each configuration (2 → W → W → W → 2, ReLU, Tanh, MSE, SGD, float32, `n_train` points)
trains for a few epochs as one process and as N ranks, interleaved, best of `--repeats`.
The time is the training time minidl records itself (`elapsed_s` of the last metrics row),
so process start-up and the rendezvous do not count; per-epoch evaluation does (every rank
evaluates the whole data set, as a single process does). Every rank gets
OMP_NUM_THREADS = cores / N (as `--nproc` arranges); the single process runs once on one
thread and once on all cores, and the better of the two is the baseline.

    python benchmarks/bench_nproc.py                      # widths 25 256 1024, batches 100 1000
    python benchmarks/bench_nproc.py --nproc 4 --widths 1024 --batches 1000 4000
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def config(width: int, batch: int, n_train: int, epochs: int, runs_dir: Path) -> dict:
    linear = {"type": "linear", "out_features": width}
    return {
        "name": f"w{width}-b{batch}", "seed": 0,
        "data": {"type": "disk", "n_train": n_train, "n_test": 1000},
        "model": [linear, "relu", linear, "relu", linear, "relu",
                  {"type": "linear", "out_features": 2}, "tanh"],
        "loss": {"type": "mse", "targets": "signed"},
        "optimizer": {"type": "sgd", "lr": 0.007},
        "train": {"epochs": epochs, "batch_size": batch},
        "runs_dir": str(runs_dir),
    }


def train_seconds(path: Path, nproc: int, threads: int) -> float:
    """Training time per epoch of one `minidl train` (from its metrics.csv)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, "-m", "minidl_cli", "train", str(path), "-q"]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    else:
        args += [f"train.threads={threads}"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    run = Path(out.strip().splitlines()[-1])
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["elapsed_s"]) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[25, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"{platform.machine()}, {cores} cores, Python {platform.python_version()}; "
          f"{args.n_train} training points, {args.epochs} epochs, best of {args.repeats}")
    print(f"| width | batch | 1 process, 1 thread s/epoch | 1 process, {cores} threads "
          f"s/epoch | {args.nproc} ranks s/epoch | speed-up |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for batch in args.batches:
                path = Path(tmp) / f"w{width}-b{batch}.yaml"
                path.write_text(yaml.safe_dump(config(width, batch, args.n_train, args.epochs,
                                                      Path(tmp) / "runs")))
                single, threaded, many = [], [], []
                for _ in range(args.repeats):  # interleaved: all see the same machine load
                    single.append(train_seconds(path, 1, 1))
                    threaded.append(train_seconds(path, 1, cores))
                    many.append(train_seconds(path, args.nproc, max(1, cores // args.nproc)))
                best = min(min(single), min(threaded))
                print(f"| {width} | {batch} | {min(single):.4f} | {min(threaded):.4f} | "
                      f"{min(many):.4f} | {best / min(many):.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
