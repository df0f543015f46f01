"""The whole reference run against scikit-learn's, in CPU seconds, and where minidl's go.

Three kinds of child process, interleaved for `--rounds` rounds (alternating which goes first):

- minidl: `minidl train configs/disk.yaml --quiet runs_dir=<tmp>`, the reference run: 1000
  disk points, 2 → 25 → 25 → 25 → 2, 500 epochs of SGD in batches of 100, per-epoch loss and
  accuracy on train and test (metrics.csv), checkpoints, and the four pictures.
- scikit-learn: `MLPClassifier(hidden_layer_sizes=(25, 25, 25), solver="sgd",
  batch_size=100, learning_rate_init=0.1, momentum=0, alpha=0, max_iter=500)` fitted on 1000
  disk points of its own (numpy), with early stopping and the no-improvement stop switched
  off so that it runs all 500 epochs; its targets are the one-hot labels, so its output
  layer has 2 units like minidl's (sklearn's multilabel mode: two logistic units and the
  log-loss). The whole process: interpreter, numpy/scipy/sklearn imports, data, fit.
  It does strictly LESS work than minidl's run: the same training (same shapes, batches and
  epochs; shuffled each epoch) and nothing else — no per-epoch evaluation of train and
  test, no metrics file, no checkpoints, no pictures. (Its fit does add the loss of every
  batch to an epoch total, which minidl's step does not.) So `minidl / sklearn` ≤ 1 means
  the whole minidl run, everything included, costs no more CPU than sklearn's training.
- breakdown: this script in a child of its own (`--phases`), running the same `minidl
  train` command in-process through the CLI with timers wrapped around the library's
  functions (nothing in the library prints or times for this), to say where minidl's CPU
  goes: interpreter + imports, config + data + model + run directory, the training loop,
  per-epoch evaluation, per-epoch metrics line and kept state, checkpoint writes, pictures
  (matplotlib's import included), and the rest (meta.json, exit).

Each child's CPU is user + sys from os.wait4 (the child's own rusage). Every child gets
OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1: one thread, as configs/disk.yaml asks
of torch, so that no side spins threads the other does not. The table keeps the best (least)
CPU of each, and the ratio of the bests; each round's ratio and their median are printed
too (on a shared VM the same process varies by ±30% from run to run, so interleaving and
best-of matter). minidl_cli is byte-compiled first, as `pip install` leaves an installed
package (see byte_compile).

scikit-learn is not a minidl dependency: the first run makes a venv of its own
(`python -m venv` + `pip install scikit-learn`) under ~/.cache/minidl-bench/ (or
$MINIDL_BENCH_CACHE) and reuses it; if that fails the comparison is skipped with a message.

    python benchmarks/bench_run.py                  # 3 rounds (about 1 min on a quiet machine)
    python benchmarks/bench_run.py --rounds 5
    python benchmarks/bench_run.py --epochs 2 --rounds 1 --no-sklearn   # a quick check
"""

from __future__ import annotations

import os
import sys
import time

_STARTED_CPU = time.process_time()  # first: the interpreter's start-up is already in it

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "disk.yaml"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PHASES = ["interpreter + imports", "config, data, model, run directory", "training loop",
          "per-epoch evaluation", "per-epoch metrics line + kept state", "checkpoint writes",
          "pictures", "the rest (meta.json, exit)"]

SKLEARN_SCRIPT = """
import sys, warnings
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

epochs = int(sys.argv[1])
rng = np.random.default_rng(0)

def disk(n):  # minidl's disk: uniform in [0,1]^2, class 1 inside the disk of area 1/2
    x = rng.random((n, 2))
    return x, (((x - 0.5) ** 2).sum(1) < 1 / (2 * np.pi)).astype(int)

x_train, y_train = disk(1000)
x_test, y_test = disk(1000)
onehot = np.eye(2, dtype=int)  # two output units, as minidl's 2 -> 25 -> 25 -> 25 -> 2
model = MLPClassifier(hidden_layer_sizes=(25, 25, 25), activation="relu", solver="sgd",
                      batch_size=100, learning_rate_init=0.1, momentum=0.0,
                      nesterovs_momentum=False, alpha=0.0, max_iter=epochs, tol=0.0,
                      n_iter_no_change=epochs + 1, early_stopping=False, shuffle=True,
                      random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(x_train, onehot[y_train])
assert model.n_iter_ == epochs, model.n_iter_
print(f"test accuracy {(model.predict(x_test).argmax(1) == y_test).mean():.3f}")
"""


# ---------------------------------------------------------------- child processes


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: "1" for name in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def cpu_of(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(user + sys CPU seconds, stdout) of one child process; RuntimeError if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            message = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {code}:\n{message}")
        return usage.ru_utime + usage.ru_stime, out.read().decode(errors="replace")


def byte_compile() -> None:
    """Byte-compile this checkout's minidl_cli, as `pip install` does for an installed package.

    An editable install compiles on first import, but not where PYTHONDONTWRITEBYTECODE is set
    (as on this project's machines): every run would then compile minidl's ~70 modules from
    source (~0.1-0.2 CPU s) while scikit-learn's venv has its bytecode from pip.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "minidl_cli")],
                   check=True, stdout=subprocess.DEVNULL)


def minidl_command(runs_dir: str, epochs: int | None) -> list[str]:
    """`minidl train configs/disk.yaml --quiet` (as `python -m minidl_cli`, this checkout)."""
    overrides = [f"runs_dir={runs_dir}"] + ([f"train.epochs={epochs}"] if epochs else [])
    return [sys.executable, "-m", "minidl_cli", "train", str(CONFIG), "--quiet", *overrides]


def sklearn_python(cache: Path) -> tuple[Path | None, str]:
    """(the python of a venv with scikit-learn, '') or (None, why not)."""
    venv = cache / "sklearn-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import sklearn"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    print(f"making a venv with scikit-learn in {venv} (once; about a minute)...",
          file=sys.stderr, flush=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "--quiet", "scikit-learn"], check]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{' '.join(step[:4])}: {e}"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return None, f"{' '.join(step[:4])} failed: {lines[-1] if lines else done.returncode}"
    return python, ""


# ---------------------------------------------------------------- the breakdown (in-process)


def phases(argv: list[str]) -> None:
    """Run `minidl train` in this process with the library's phases timed; print them.

    Called as the child `bench_run.py --phases RUNS_DIR [EPOCHS]`. Prints one
    `phase<TAB>cpu seconds` line per phase; the parent adds the exit from wait4.
    """
    runs_dir, epochs = argv[0], (int(argv[1]) if len(argv) > 1 else None)
    from minidl_cli import cli
    from minidl_cli.cli import common

    if hasattr(common, "pause_gc_for_imports"):  # as the `minidl` entry point starts
        common.pause_gc_for_imports()
    import torch  # noqa: F401  (what `minidl train` imports, timed as imports)

    from minidl_cli import experiment
    from minidl_cli.checkpointer import Checkpointer
    from minidl_cli.plots.canvas import import_matplotlib
    from minidl_cli.runs import Run
    from minidl_cli.train import Trainer

    import_matplotlib()  # imported by `minidl train` with torch, for the pictures at the end
    spent = dict.fromkeys(PHASES, 0.0)
    spent[PHASES[0]] = time.process_time()
    fit_started, fit = [0.0], Trainer.fit

    def fit_marked(self, *args, **kwargs):
        fit_started[0] = time.process_time()
        return fit(self, *args, **kwargs)

    Trainer.fit = fit_marked
    for owner, name, phase in ((Trainer, "train_epoch", PHASES[2]),
                               (Trainer, "measure", PHASES[3]),
                               (Run, "append_metrics", PHASES[4]),
                               (Checkpointer, "keep", PHASES[4]),
                               (Checkpointer, "write", PHASES[5]),
                               (experiment, "draw_plots", PHASES[6])):
        _time_calls(owner, name, phase, spent)
    args = ["train", str(CONFIG), "--quiet", f"runs_dir={runs_dir}"]
    args += [f"train.epochs={epochs}"] if epochs else []
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
    spent[PHASES[1]] = fit_started[0] - spent[PHASES[0]]
    spent[PHASES[7]] = time.process_time() - sum(spent.values())
    for phase in PHASES:
        print(f"{phase}\t{spent[phase]:.4f}")
    getattr(cli, "exit_now", sys.exit)(0)  # end the process as `minidl` itself ends it


def _time_calls(owner: object, name: str, phase: str, spent: dict[str, float]) -> None:
    """Wrap `owner.name` so that its CPU time adds to spent[phase]; a name the code does not
    have (the loop was restructured) leaves its time in "the rest"."""
    inner = getattr(owner, name, None)
    if inner is None:
        return

    def wrapper(*args, **kwargs):
        started = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[phase] += time.process_time() - started

    setattr(owner, name, wrapper)


def breakdown_of(runs_dir: str, epochs: int | None, env: dict[str, str]) -> dict[str, float]:
    """The phases of one `minidl train`, in CPU seconds; exit and teardown go to the rest."""
    command = [sys.executable, str(Path(__file__).resolve()), "--phases", runs_dir]
    total, out = cpu_of(command + ([str(epochs)] if epochs else []), env)
    spent = {}
    for line in out.splitlines():
        phase, _, seconds = line.partition("\t")
        if phase in PHASES:
            spent[phase] = float(seconds)
    spent[PHASES[7]] += total - sum(spent.values())
    return spent


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--phases"]:
        phases(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train.epochs for both (default: the config's 500)")
    parser.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the breakdown child")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "MINIDL_BENCH_CACHE", Path.home() / ".cache" / "minidl-bench")),
                        help="where the scikit-learn venv lives")
    args = parser.parse_args(argv)
    env = child_env()
    epochs = args.epochs or 500
    byte_compile()

    sklearn = None
    if not args.no_sklearn:
        sklearn, why = sklearn_python(args.cache)
        if sklearn is None:
            print(f"scikit-learn skipped: could not make its venv ({why}); the minidl side "
                  "still runs", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="minidl-bench-run-") as tmp:
        script = Path(tmp) / "sklearn_reference.py"
        script.write_text(SKLEARN_SCRIPT)
        kinds = {"minidl": minidl_command(tmp, args.epochs)}
        if sklearn is not None:
            kinds["sklearn"] = [str(sklearn), str(script), str(epochs)]
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        parts: list[dict[str, float]] = []
        for i in range(args.rounds):
            order = list(kinds) + ([] if args.no_breakdown else ["breakdown"])
            for kind in order[::1 if i % 2 == 0 else -1]:
                if kind == "breakdown":
                    parts.append(breakdown_of(tmp, args.epochs, env))
                    continue
                cpu[kind].append(cpu_of(kinds[kind], env)[0])
            line = "  ".join(f"{kind} {values[-1]:.2f} s" for kind, values in cpu.items())
            if sklearn is not None:
                line += f"  ratio {cpu['minidl'][-1] / cpu['sklearn'][-1]:.2f}"
            print(f"round {i + 1}: {line}", file=sys.stderr, flush=True)

    report(cpu, parts, epochs, args.rounds)
    return 0


def report(cpu: dict[str, list[float]], parts: list[dict[str, float]], epochs: int,
           rounds: int) -> None:
    import platform
    import statistics

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"whole processes, CPU s (user + sys), best of {rounds}: {platform.machine()}, "
          f"{os.cpu_count()} cores, load {load:.1f}, Python {platform.python_version()}, "
          f"{epochs} epochs, one thread")
    print()
    print("| process | best CPU s | every round |")
    print("|---|---|---|")
    names = {"minidl": "`minidl train configs/disk.yaml --quiet` (everything)",
             "sklearn": "scikit-learn MLPClassifier, same shapes and epochs (only trains)"}
    for kind, values in cpu.items():
        print(f"| {names[kind]} | {min(values):.2f} | {' '.join(f'{v:.2f}' for v in values)} |")
    if "sklearn" in cpu:
        ratios = [m / s for m, s in zip(cpu["minidl"], cpu["sklearn"], strict=True)]
        best = min(cpu["minidl"]) / min(cpu["sklearn"])
        print()
        print(f"minidl / sklearn: {best:.2f} (best against best; per round "
              f"{', '.join(f'{r:.2f}' for r in ratios)}, median "
              f"{statistics.median(ratios):.2f}); goal ≤ 1.0: "
              f"{'met' if best <= 1.0 else 'missed'}")
    if parts:
        print()
        print(f"minidl's CPU by phase, s (best of {len(parts)} per phase):")
        print()
        print("| phase | CPU s |")
        print("|---|---|")
        for phase in PHASES:
            print(f"| {phase} | {min(p[phase] for p in parts):.2f} |")
        totals = [sum(p.values()) for p in parts]
        print(f"| **whole process** (best total) | **{min(totals):.2f}** |")


if __name__ == "__main__":
    sys.exit(main())
