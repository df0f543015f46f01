"""`--trials N`: a search over ranges with Optuna's sampler, beside the grid of sweeps.py.

    minidl train configs/disk.yaml train.val_fraction=0.2 --trials 20 \\
        --sweep 'optimizer.lr=log(1e-3,1)' --sweep 'model.0.out_features=choice(8,16,32)'

`KEY=interval(lo,hi)` draws a float uniformly, `log(lo,hi)` on a log scale, `int(lo,hi)` an
integer, `choice(a,b,c)` (or a grid's `a,b,c`) one of the values (parsed as YAML). Each trial
is a point of a sweep directory (sweep.json, summary.csv; a seed group with --seeds) and
reports the final *validation* metric (val_loss, or train.early_stopping's monitor; the mean
over its seeds) to Optuna's TPE sampler, seeded
with the config's seed: the test set is never looked at while searching. Optuna is an
optional extra (`pip install minidl[sweep]`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli import seeds as groups
from minidl_cli import sweeps
from minidl_cli.runs import atomic_write, create_run_dir, kept_metrics, locked, write_json_atomic

if TYPE_CHECKING:
    from minidl_cli.train import StopFlag

RANGE = re.compile(r"^(interval|log|int|choice)\((.*)\)$", re.S)


def is_range(values: list[str]) -> bool:
    return len(values) == 1 and RANGE.match(values[0]) is not None


def parse_space(grid: list[tuple[str, list[str]]]) -> dict[str, tuple[str, list[Any]]]:
    """{key: (kind, arguments)} of the --sweep specs; a plain value list is a choice.
    ValueError (one line) for a malformed range."""
    space = {}
    for key, values in grid:
        match = RANGE.match(values[0]) if len(values) == 1 else None
        if match is None:
            space[key] = ("choice", [sweeps.parse_value(v) for v in values])
            continue
        kind, text = match.groups()
        args = [_number(a.strip()) for a in sweeps.split_top_level(text)]
        if kind == "choice":
            if not text.strip():
                raise ValueError(f"--sweep {key}=choice(): give the values, e.g. choice(8,16)")
            space[key] = ("choice", args)
            continue
        numbers = len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                         for a in args)
        if not numbers or not args[0] < args[1] or (kind == "log" and args[0] <= 0) or (
                kind == "int" and not all(isinstance(a, int) for a in args)):
            what = "two integers" if kind == "int" else "two numbers lo < hi" + (
                ", lo > 0" if kind == "log" else "")
            raise ValueError(f"--sweep {key}={values[0]}: {kind}(lo,hi) takes {what}, e.g. "
                             f"{key}={kind}({'1,8' if kind == 'int' else '0.001,0.1'})")
        space[key] = (kind, args)
    return space


def _number(text: str) -> Any:
    """`text` as an int or a float where it reads as one (1e-3 too, which YAML 1.1 leaves a
    string), else as YAML."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return sweeps.parse_value(text)


def import_optuna() -> Any:
    """optuna, or ImportError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError("--trials searches with Optuna, which is not installed; install it "
                          "with: pip install 'minidl[sweep]' (or pip install optuna), or give "
                          "lists of values for a grid: --sweep KEY=V1,V2") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def objective_of(config: dict[str, Any]) -> tuple[str, str]:
    """(the validation metric the search optimises: train.early_stopping's monitor, else
    val_loss; minimize or maximize); ValueError when the config holds out no validation
    split."""
    if not config["train"]["val_fraction"]:
        raise ValueError("--trials optimises a validation metric and never the test one; "
                         "hold out a validation split with train.val_fraction=0.2")
    metric = (config["train"].get("early_stopping") or {}).get("monitor", "val_loss")
    lower = metric.endswith(("loss", "error", "mae", "rmse"))
    return metric, "minimize" if lower else "maximize"


def run_search(config_path: Path, overrides: list[str], grid: list[tuple[str, list[str]]],
               trials: int, seeds: list[int] | None, jobs: int = 1,
               on_done: Callable[[str, dict], None] | None = None,
               stop: StopFlag | None = None) -> tuple[Path, list[dict]]:
    """`trials` points drawn by Optuna's TPE sampler (`jobs` at a time), each trained as a
    sweep point; the sweep directory and its summary rows."""
    from minidl_cli.config import load_config

    optuna = import_optuna()
    space = parse_space(grid)
    base = load_config(config_path, overrides, data=False)
    metric, direction = objective_of(base)
    study = optuna.create_study(direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=base["seed"]))
    sweep = create_run_dir(Path(base["runs_dir"]), f"{base['name']}-sweep")
    with locked(sweep):  # a --resume of it from another process is refused meanwhile
        return sweep, _search(sweep, study, space, base, config_path, overrides, trials,
                              seeds, jobs, on_done, stop)


def _search(sweep: Path, study: Any, space: dict[str, tuple[str, list[Any]]],
            base: dict[str, Any], config_path: Path, overrides: list[str], trials: int,
            seeds: list[int] | None, jobs: int, on_done: Callable[[str, dict], None] | None,
            stop: StopFlag | None) -> list[dict]:
    """run_search's trials in the new, locked directory `sweep`; the summary rows."""
    from minidl_cli.config import dump_yaml

    optuna = import_optuna()
    metric, direction = objective_of(base)
    info: dict[str, Any] = {
        "kind": "minidl-sweep", "keys": list(space),
        "values": {k: [kind, *args] for k, (kind, args) in space.items()}, "seeds": seeds,
        "search": {"trials": trials, "sampler": "optuna TPESampler", "seed": base["seed"],
                   "objective": metric, "direction": direction},
        "points": [], "status": "running"}
    atomic_write(sweep / "config.yaml", dump_yaml(base).encode())
    rows: dict[tuple[str, int | None], dict] = {}
    try:
        while len(info["points"]) < trials and not (stop is not None and stop()):
            batch = [study.ask() for _ in range(min(jobs, trials - len(info["points"])))]
            names, members = [], []
            for trial in batch:
                point = _trial_point(trial, space, config_path, overrides,
                                     base["seed"] if seeds is None else None)
                info["points"].append({**point, "trial": trial.number})
                names.append(point["name"])
                (sweep / point["name"]).mkdir()
                members += _point_members(sweep, point["name"], point["config"], seeds)
            write_json_atomic(sweep / sweeps.SWEEP_FILE, info)
            work, owners = [item for item, _ in members], [owner for _, owner in members]

            def done(i: int, row: dict, owners=owners) -> None:
                rows[owners[i]] = row
                if on_done and row["status"] != groups.NOT_STARTED:
                    on_done(owners[i][0], row)

            groups.run_members(work, jobs, done, stop)
            _tell(optuna, study, [(trial, objective(sweep / name, metric))
                                  for trial, name in zip(batch, names, strict=True)])
    finally:
        summary = sweeps.finish_sweep(sweep, info, rows)
    return summary


def _tell(optuna: Any, study: Any, results: list[tuple[Any, float]]) -> None:
    """Each trial's objective to the study; NaN (no member completed) as a failed trial."""
    for trial, value in results:
        if math.isnan(value):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)


def _trial_point(trial: Any, space: dict[str, tuple[str, list[Any]]], config_path: Path,
                 overrides: list[str], seed: int | None) -> dict[str, Any]:
    """A trial's point of the sweep: its name ('trial-0003,optimizer.lr=0.0123'), the values
    Optuna's `trial` draws from `space`, and its resolved config (`seed`: the config's, or
    None for a seed group's point)."""
    values = {key: _suggest(trial, key, kind, args) for key, (kind, args) in space.items()}
    texts = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in values.items()}
    name = f"trial-{trial.number:04d}," + sweeps.point_name(
        {k: f"{v:.4g}" if isinstance(v, float) else t
         for (k, v), t in zip(values.items(), texts.values(), strict=True)})
    (_, config), = sweeps.resolve_points(
        config_path, overrides, [(k, [t]) for k, t in texts.items()], seed)
    return {"name": name, "values": values, "config": config}


def _point_members(sweep: Path, name: str, config: dict, seeds: list[int] | None) -> list:
    """What training point `name` takes: [((train_member, its arguments), (name, seed))],
    one member (seed None) or a seed group's members (the group prepared on disk)."""
    if seeds is None:
        return [((groups.train_member, (config, sweep / name)), (name, None))]
    return [((groups.train_member, (cfg, sweep / name / groups.member_name(cfg["seed"]))),
             (name, cfg["seed"]))
            for cfg in groups.prepare_group(sweep / name, config, seeds)]


def _suggest(trial: Any, key: str, kind: str, args: list[Any]) -> Any:
    if kind == "choice":
        return trial.suggest_categorical(key, args)
    if kind == "int":
        return trial.suggest_int(key, args[0], args[1])
    return trial.suggest_float(key, float(args[0]), float(args[1]), log=kind == "log")


def objective(point: Path, metric: str) -> float:
    """The mean over a point's completed members of `metric` in the metrics row of the
    model each keeps (runs.kept_metrics); NaN when none completed."""
    members = groups.member_dirs(point) if groups.is_group(point) else [point]
    values = []
    for member in members:
        try:
            if json.loads((member / "meta.json").read_text())["status"] != "completed":
                continue
            values.append((kept_metrics(member) or {})[metric])
        except (OSError, ValueError, KeyError):
            continue
    return sum(values) / len(values) if values else math.nan
