"""Whole-process wall time of the minidl command line, against a plain torch.nn script.

Each command runs as a fresh subprocess, several times, interleaved; the table gives the
median and the best wall time and the child's peak resident memory (ru_maxrss):

- `minidl --help` (must not import torch);
- `minidl train configs/disk.yaml --quiet runs_dir=<tmp>`: the reference experiment, 500
  epochs with per-epoch evaluation on train and test, checkpoints, metrics.csv, meta.json
  and the four pictures at the end;
- `python benchmarks/torch_reference.py`: the same training in torch.nn + autograd +
  torch.optim, which only trains.

All children get OMP_NUM_THREADS=1 (see --threads): on a small shared machine, intra-op
threads on these tiny matrices only add contention.

    python benchmarks/bench_cli.py                # 5 runs each
    python benchmarks/bench_cli.py --runs 9 --threads 0   # torch's default threads
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "disk.yaml"
REFERENCE = ROOT / "benchmarks" / "torch_reference.py"


def minidl_command() -> list[str]:
    """The `minidl` console script when installed, else `python -m minidl_cli`."""
    script = shutil.which("minidl")
    return [script] if script else [sys.executable, "-m", "minidl_cli"]


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process; raises if it fails."""
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(command)} exited {code}:\n{message}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def imports_torch(env: dict[str, str]) -> bool:
    """Whether importing the CLI module (what `minidl --help` runs) imports torch."""
    code = "import sys, minidl_cli.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return out.strip() == "True"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each training (default 5)")
    parser.add_argument("--help-runs", type=int, default=15, help="runs of --help (default 15)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for the children (default 1; 0: leave unset)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    results = measure(env, args.runs, args.help_runs)
    report(results, env)
    return 0


def measure(env: dict[str, str], runs: int, help_runs: int
            ) -> dict[str, list[tuple[float, float]]]:
    """(wall s, peak RSS MiB) of each run of `minidl --help`, then of the two trainings
    (minidl's, the torch.nn script's) interleaved, alternating which goes first."""
    minidl = minidl_command()
    with tempfile.TemporaryDirectory(prefix="minidl-bench-") as runs_dir:
        commands = {
            "minidl --help": minidl + ["--help"],
            "minidl train configs/disk.yaml --quiet": minidl + [
                "train", str(CONFIG), "--quiet", f"runs_dir={runs_dir}"],
            "torch.nn script (only trains)": [sys.executable, str(REFERENCE)],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(help_runs):
            results["minidl --help"].append(run_once(commands["minidl --help"], env))
        trainings = list(commands)[1:]
        for i in range(runs):  # interleaved, alternating which goes first
            for name in trainings[::1 if i % 2 == 0 else -1]:
                results[name].append(run_once(commands[name], env))
                print(f"  {name}: {results[name][-1][0]:.2f} s", file=sys.stderr, flush=True)
    return results


def report(results: dict[str, list[tuple[float, float]]], env: dict[str, str]) -> None:
    """The table of medians, bests and peak memory, and the two targets."""
    import torch  # only for the versions line; the children import their own

    threads = env.get("OMP_NUM_THREADS", "default")
    print(f"minidl CLI, whole process: {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={threads}")
    print()
    print("| command | median s | best s | peak RSS MiB | runs |")
    print("|---|---|---|---|---|")
    median = {}
    for name, samples in results.items():
        walls, rss = [w for w, _ in samples], [r for _, r in samples]
        median[name] = statistics.median(walls)
        print(f"| `{name}` | {median[name]:.2f} | {min(walls):.2f} | {max(rss):.0f} "
              f"| {len(samples)} |")
    print()
    trainings = list(results)[1:]
    train_s, reference_s = median[trainings[0]], median[trainings[1]]
    help_s = median["minidl --help"]
    torch_imported = imports_torch(env)
    print(f"targets: `minidl --help` ≤ 0.3 s: {help_s:.2f} s "
          f"({'met' if help_s <= 0.3 else 'missed'}; imports torch: "
          f"{'yes' if torch_imported else 'no'})")
    print(f"         minidl train ≤ torch.nn script: {train_s:.2f} s vs {reference_s:.2f} s, "
          f"ratio {train_s / reference_s:.2f} ({'met' if train_s <= reference_s else 'missed'})")


if __name__ == "__main__":
    sys.exit(main())
