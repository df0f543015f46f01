"""Loading a CSV: minidl's `csv` data set against `pandas.read_csv` + `torch.tensor`.

Writes a CSV of `--rows` rows (10 float features with 5 decimals and an integer label,
about 88 bytes a row) to a temporary folder, then loads it in fresh child processes,
interleaved, `--repeats` times each:

- minidl: `make_dataset("csv", {train, test_fraction: 0.2})`: parse, split, encode the
  labels, hash the file (SHA-256), into float64 x and int64 y tensors;
- pandas: `pandas.read_csv(path)`, then `torch.tensor` of the feature columns and of the
  label column (no split, no hash).

Imports (torch, pandas, pyarrow) happen before the clock starts, in both. The table gives
the best load time (wall clock), the best CPU time of the load (all threads: the work done,
which a busy machine distorts less) and each child's peak resident memory (ru_maxrss,
imports included).
pandas is not a minidl dependency: `pip install pandas` for the comparison; without it
the script measures minidl alone and says so.

`--epochs` adds samples/s of one training epoch (10 -> 64 -> 64 -> 2, ReLU, cross-entropy,
Adam, batch 256, one thread) for 10^3 ... `--rows` rows, each loaded from its own CSV.

    python benchmarks/bench_csv.py                       # 10^6 rows, best of 3 (~1 min)
    python benchmarks/bench_csv.py --rows 1e7 --repeats 1
    python benchmarks/bench_csv.py --rows 1e7 --epochs   # the samples/s table up to 10^7
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [f"x{i}" for i in range(1, 11)]
BLOCK = 1_000_000  # rows generated and written at a time (bounded memory at 10^7)


def write_csv(path: Path, rows: int, seed: int = 0) -> int:
    """A CSV of `rows` rows: 10 N(0, 1) features rounded to 5 decimals and a 0/1 label."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in FEATURES] + [("label", pa.int64())])
    with pa_csv.CSVWriter(str(path), schema) as writer:
        for start in range(0, rows, BLOCK):
            x = rng.standard_normal((min(BLOCK, rows - start), len(FEATURES))).round(5)
            label = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64)
            writer.write_table(pa.table([*x.T, label], schema=schema))
    return path.stat().st_size


# ---------------------------------------------------------------- children


def child(kind: str, path: str) -> dict:
    """Load `path` once as `kind`: {"load_s": wall, "cpu_s": all threads' CPU, "shape": ...}."""
    import torch

    if kind == "pandas":
        import pandas

        started, cpu = time.perf_counter(), time.process_time()
        frame = pandas.read_csv(path)
        x = torch.tensor(frame[FEATURES].to_numpy())
        y = torch.tensor(frame["label"].to_numpy())
    else:
        import minidl_cli.data.table  # noqa: F401  (pyarrow imported before the clock too)
        from minidl_cli import registry
        from minidl_cli.data import make_dataset

        registry.load_builtins()  # imports minidl_cli.nn and .optim: not the load's work

        started, cpu = time.perf_counter(), time.process_time()
        ds = make_dataset("csv", {"train": path, "test_fraction": 0.2}, seed=0)
        x, y = ds.x_train, ds.y_train
        assert ds.data_files and x.dtype == torch.float64
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"load_s": seconds, "cpu_s": cpu, "shape": list(x.shape), "labels": len(y)}


def run_child(kind: str, path: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(load seconds, load CPU seconds, peak RSS in MiB) of one fresh child process."""
    command = [sys.executable, __file__, "--child", kind, str(path)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{kind} child failed:\n{err.read().decode(errors='replace')}")
        out.seek(0)
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    return result["load_s"], result["cpu_s"], usage.ru_maxrss / 1024  # Linux reports KiB


def has_pandas(env: dict[str, str]) -> bool:
    found = subprocess.run([sys.executable, "-c", "import pandas"], env=env, capture_output=True)
    return found.returncode == 0


def compare_loads(path: Path, repeats: int, env: dict[str, str],
                  in_process: bool = False) -> dict[str, tuple[float, float, float]]:
    """Best load time, best CPU time and largest peak RSS of each loader, interleaved.

    in_process: load in this process instead (no peak RSS; a quick check that all runs).
    """
    kinds = ["minidl", "pandas"] if has_pandas(env) else ["minidl"]
    best: dict[str, tuple[float, float, float]] = {}
    for repeat in range(repeats):
        first = repeat % len(kinds)  # alternate which loader goes first
        for kind in kinds[first:] + kinds[:first]:
            if in_process:
                result = child(kind, str(path))
                seconds, cpu, rss = result["load_s"], result["cpu_s"], 0.0  # not measured
            else:
                seconds, cpu, rss = run_child(kind, path, env)
            old = best.get(kind, (float("inf"), float("inf"), 0.0))
            best[kind] = (min(old[0], seconds), min(old[1], cpu), max(old[2], rss))
    return best


# ---------------------------------------------------------------- samples/s of an epoch


def epoch_throughput(path: Path, rows: int) -> tuple[float, float]:
    """(load seconds, training samples/s of one epoch) of the small table network on `path`."""
    import torch

    from minidl_cli.config import resolve
    from minidl_cli.train import Trainer

    torch.set_num_threads(1)
    raw = {
        "seed": 0,
        "data": {"type": "csv", "train": str(path), "test_fraction": 0.2, "standardize": True},
        "model": [{"type": "linear", "out_features": 64}, "relu",
                  {"type": "linear", "out_features": 64}, "relu",
                  {"type": "linear", "out_features": 2}],
        "loss": "cross_entropy",
        "optimizer": {"type": "adam", "lr": 0.001},
        "train": {"epochs": 1, "batch_size": min(256, int(rows * 0.8))},
    }
    started = time.perf_counter()
    trainer = Trainer(resolve(raw, path, data=False))  # the Trainer checks it against the data
    load = time.perf_counter() - started
    best = float("inf")
    for _ in range(3 if rows <= 100_000 else 1):  # small sets: best of 3 epochs
        started = time.perf_counter()
        trainer.train_epoch()
        best = min(best, time.perf_counter() - started)
    return load, len(trainer.dataset.x_train) / best


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=float, default=1e6, help="rows of the CSV (default 1e6)")
    parser.add_argument("--repeats", type=int, default=3, help="loads of each kind (default 3)")
    parser.add_argument("--epochs", action="store_true",
                        help="also samples/s of one training epoch for 10^3 ... --rows rows")
    parser.add_argument("--in-process", action="store_true",
                        help="load in this process, not in fresh ones (no peak RSS; for tests)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    rows = int(args.rows)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with tempfile.TemporaryDirectory(prefix="minidl-bench-csv-") as folder:
        path = Path(folder) / "table.csv"
        size = write_csv(path, rows)
        where = "in this process" if args.in_process else "each in a fresh process"
        print(f"{rows:,} rows x {len(FEATURES)} features + label: {size / 1e6:.0f} MB CSV; "
              f"best of {args.repeats} loads, {where}\n")
        best = compare_loads(path, args.repeats, env, args.in_process)
        print("| loader | load (s) | CPU (s) | peak RSS (MB) |\n|---|---:|---:|---:|")
        for kind, (seconds, cpu, rss) in best.items():
            name = "minidl csv" if kind == "minidl" else "pandas.read_csv + torch.tensor"
            memory = "-" if args.in_process else f"{rss:.0f}"
            print(f"| {name} | {seconds:.2f} | {cpu:.2f} | {memory} |")
        if "pandas" in best:
            ratio = [best["minidl"][i] / best["pandas"][i] for i in (0, 1)]
            print(f"\nminidl / pandas: load time {ratio[0]:.2f}x, CPU time {ratio[1]:.2f}x")
        else:
            print("\npandas is not installed, so only minidl was measured: `pip install pandas` "
                  "for the comparison (minidl itself does not need it)")
        if args.epochs:
            print_epochs(folder, rows)
    return 0


def print_epochs(folder: str, rows: int) -> None:
    print("\n| rows | load (s) | one epoch (samples/s) |\n|---:|---:|---:|")
    sizes = [n for n in (10**3, 10**4, 10**5, 10**6, 10**7) if n <= rows] or [rows]
    for n in sizes:
        path = Path(folder) / f"epoch_{n}.csv"
        write_csv(path, n, seed=1)
        load, speed = epoch_throughput(path, n)
        print(f"| {n:,} | {load:.2f} | {speed:,.0f} |", flush=True)
        path.unlink()


if __name__ == "__main__":
    sys.exit(main())
