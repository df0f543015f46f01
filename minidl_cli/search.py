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

The space is checked before anything is created (check_space); a draw that no config
allows is a failed trial (Optuna's TrialState.FAIL). The sweep keeps the config file as
source.yaml, so `--resume` can draw the trials an interrupted search is missing: the study
is rebuilt from the finished points (study.add_trial), the sampler reseeded with the
config's seed plus their number. The new draws are not those an uninterrupted search would
have made (the sampler's state is not saved), but they follow the same finished trials.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli import seeds as groups
from minidl_cli import sweeps
from minidl_cli.runs import (
    RunError,
    atomic_write,
    create_run_dir,
    kept_metrics,
    locked,
    write_json_atomic,
)

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
        texts = [a.strip() for a in sweeps.split_top_level(text)]
        args = [_number(a) for a in texts]
        if kind == "choice":
            if not text.strip():
                raise ValueError(f"--sweep {key}=choice(): give the values, e.g. choice(8,16)")
            twice = sweeps.repeated(texts)
            if twice:
                raise ValueError(f"--sweep {key}={values[0]}: {twice[1]} repeats {twice[0]} "
                                 "(the same value); list each value once")
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


SOURCE_FILE = "source.yaml"  # a search's config file as given: later trials start from it


def run_search(config_path: Path, overrides: list[str], grid: list[tuple[str, list[str]]],
               trials: int, seeds: list[int] | None, jobs: int = 1,
               on_done: Callable[[str, dict], None] | None = None,
               stop: StopFlag | None = None) -> tuple[Path, list[dict]]:
    """`trials` points drawn by Optuna's TPE sampler (`jobs` at a time), each trained as a
    sweep point; the sweep directory and its summary rows. The space is checked first
    (check_space): nothing is created for a spec no trial could satisfy."""
    from minidl_cli.config import dump_yaml, load_config, load_yaml

    import_optuna()
    space = parse_space(grid)
    base = load_config(config_path, overrides, data=False)
    metric, direction = objective_of(base)
    check_space(space, {key: ",".join(values) for key, values in grid},
                load_yaml(config_path), config_path, overrides,
                base["seed"] if seeds is None else None)
    sweep = create_run_dir(Path(base["runs_dir"]), f"{base['name']}-sweep")
    with locked(sweep):  # a --resume of it from another process is refused meanwhile
        atomic_write(sweep / SOURCE_FILE, Path(config_path).read_bytes())
        atomic_write(sweep / "config.yaml", dump_yaml(base).encode())
        info: dict[str, Any] = {
            "kind": "minidl-sweep", "keys": list(space),
            "values": {k: [kind, *args] for k, (kind, args) in space.items()},
            "seeds": seeds,
            "search": {"trials": trials, "sampler": "optuna TPESampler", "seed": base["seed"],
                       "objective": metric, "direction": direction,
                       "config": str(Path(config_path).absolute()), "overrides": overrides},
            "points": [], "status": "running"}
        write_json_atomic(sweep / sweeps.SWEEP_FILE, info)
        return sweep, search_trials(sweep, info, [], jobs, on_done, stop)


def search_trials(sweep: Path, info: dict[str, Any], overrides: list[str], jobs: int,
                  on_done: Callable[[str, dict], None] | None,
                  stop: StopFlag | None) -> list[dict]:
    """Draw and train trials into the (locked) search `sweep` until it holds
    info["search"]["trials"] points, `jobs` at a time; the summary rows. The study starts
    from the points already there (study_of), so a resumed search goes on where it
    stopped; `overrides` (a resume's train.epochs=N) apply to the new trials too."""
    from minidl_cli.config import load_yaml

    optuna = import_optuna()
    if not (sweep / SOURCE_FILE).is_file():
        raise RunError(f"{sweep} holds {len(info['points'])} of its {info['search']['trials']} "
                       f"trials and not its config file ({SOURCE_FILE}: an older minidl made "
                       "it), so it cannot draw more; start a new search for the others")
    search, study = info["search"], study_of(optuna, sweep, info)
    raw, space = load_yaml(sweep / SOURCE_FILE), space_of(info)
    rows: dict[tuple[str, int | None], dict] = {}
    try:
        while len(info["points"]) < search["trials"] and not (stop is not None and stop()):
            batch = [study.ask() for _ in range(min(jobs, search["trials"]
                                                    - len(info["points"])))]
            members = []
            for trial in batch:
                point = _trial_point(trial, space, raw, Path(search["config"]),
                                     [*search["overrides"], *overrides],
                                     search["seed"] if info["seeds"] is None else None)
                info["points"].append({**point, "trial": trial.number})
                if point.get("failed") is None:
                    (sweep / point["name"]).mkdir()
                    members += _point_members(sweep, point["name"], point["config"],
                                              info["seeds"])
            write_json_atomic(sweep / sweeps.SWEEP_FILE, info)
            work, owners = [item for item, _ in members], [owner for _, owner in members]

            def done(i: int, row: dict, owners=owners) -> None:
                rows[owners[i]] = row
                if on_done and row["status"] != groups.NOT_STARTED:
                    on_done(owners[i][0], row)

            groups.run_members(work, jobs, done, stop)
            _tell(optuna, study, [(trial, objective(sweep / point["name"], search["objective"]))
                                  for trial, point in zip(batch, info["points"][-len(batch):],
                                                          strict=True)])
    finally:
        summary = sweeps.finish_sweep(sweep, info, rows)
    return summary


def study_of(optuna: Any, sweep: Path, info: dict[str, Any]) -> Any:
    """A study holding the search's finished points as trials (their objective, or failed),
    its TPE sampler seeded with the config's seed plus the number of those points (a
    resumed search draws anew instead of repeating its first draws)."""
    search, space = info["search"], space_of(info)
    study = optuna.create_study(direction=search["direction"], sampler=optuna.samplers.
                                TPESampler(seed=search["seed"] + len(info["points"])))
    distributions = {key: _distribution(optuna, kind, args)
                     for key, (kind, args) in space.items()}
    for point in info["points"]:
        value = (math.nan if point.get("failed") else
                 objective(sweep / point["name"], search["objective"]))
        state = optuna.trial.TrialState.FAIL if math.isnan(value) else (
            optuna.trial.TrialState.COMPLETE)
        study.add_trial(optuna.trial.create_trial(
            params=point["values"], distributions=distributions, state=state,
            value=None if math.isnan(value) else value))
    return study


def space_of(info: dict[str, Any]) -> dict[str, tuple[str, list[Any]]]:
    """A search's space as sweep.json records it: {key: (kind, arguments)}."""
    return {key: (kind, args) for key, (kind, *args) in info["values"].items()}


def _distribution(optuna: Any, kind: str, args: list[Any]) -> Any:
    """The Optuna distribution `_suggest` draws a value of `kind` from."""
    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(args)
    if kind == "int":
        return optuna.distributions.IntDistribution(args[0], args[1])
    return optuna.distributions.FloatDistribution(float(args[0]), float(args[1]),
                                                  log=kind == "log")


def _tell(optuna: Any, study: Any, results: list[tuple[Any, float]]) -> None:
    """Each trial's objective to the study; NaN (no member completed, or a draw no config
    allows) as a failed trial."""
    for trial, value in results:
        if math.isnan(value):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, value)


def _trial_point(trial: Any, space: dict[str, tuple[str, list[Any]]], raw: dict[str, Any],
                 config_path: Path, overrides: list[str], seed: int | None
                 ) -> dict[str, Any]:
    """A trial's point of the sweep: its name ('trial-0003,optimizer.lr=0.0123'), the values
    Optuna's `trial` draws from `space`, and its resolved config from the config file's
    mapping `raw` (`seed`: the config's, or None for a seed group's point). A draw no
    config allows (momentum for adam) is no config but `failed`: the reason."""
    from minidl_cli.config import ConfigError

    values = {key: _suggest(trial, key, kind, args) for key, (kind, args) in space.items()}
    texts = {k: _text(v) for k, v in values.items()}
    name = f"trial-{trial.number:04d}," + sweeps.point_name(
        {k: f"{v:.4g}" if isinstance(v, float) else t
         for (k, v), t in zip(values.items(), texts.values(), strict=True)})
    try:
        config = sweeps.resolve_point(raw, config_path, overrides, texts, seed)
    except ConfigError as e:
        return {"name": name, "values": values, "config": None, "failed": e.problems[0]}
    return {"name": name, "values": values, "config": config}


MAX_CHECKED = 256  # combinations of range ends and choices tried before a search starts


def check_space(space: dict[str, tuple[str, list[Any]]], specs: dict[str, str],
                raw: dict[str, Any], config_path: Path, overrides: list[str],
                seed: int | None) -> None:
    """ConfigError (one line quoting the `--sweep KEY=RANGE` the user typed) when an end of
    a range, or one of the choices, makes an invalid config with every combination of the
    other keys' ends and choices (the grid's config validation, point by point): a
    misspelt key, a range reaching outside the valid values. A draw between valid ends
    that no config allows fails its trial instead (e.g. a group count that does not
    divide the channels). At most MAX_CHECKED combinations are tried."""
    from minidl_cli.config import ConfigError

    ends = {key: [_text(v) for v in (args if kind == "choice" else args[:2])]
            for key, (kind, args) in space.items()}
    proven: set[tuple[str, str]] = set()
    failed: dict[tuple[str, str], list[str]] = {}
    for combo in itertools.islice(itertools.product(*ends.values()), MAX_CHECKED):
        values = dict(zip(ends, combo, strict=True))
        if set(values.items()) <= proven:
            continue
        try:
            sweeps.resolve_point(raw, config_path, overrides, values, seed)
        except ConfigError as e:
            prefix = f"--sweep point {', '.join(f'{k}={v}' for k, v in values.items())}: "
            for pair in values.items():
                failed.setdefault(pair, [p.removeprefix(prefix) for p in e.problems])
            continue
        proven |= set(values.items())
    impossible = [pair for pair in failed if pair not in proven]
    if impossible:
        key, value = next((pair for pair in impossible if _names(pair[0], failed[pair])),
                          impossible[0])
        others = " (and any value of the other swept keys)" if len(space) > 1 else ""
        raise ConfigError([f"--sweep {key}={specs[key]}: with {key}={value}{others} the "
                           f"config is not valid: {failed[key, value][0]}"])


def _names(key: str, problems: list[str]) -> bool:
    """Whether the first of a config's `problems` is about `key` or a section holding it."""
    path = re.sub(r"\[(\d+)\]", r".\1", problems[0]).partition(":")[0].strip()
    return key == path or key.startswith(f"{path}.")


def _text(value: Any) -> str:
    """A drawn value as a --sweep point's text (YAML reads it back as the value)."""
    return value if isinstance(value, str) else json.dumps(value)


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
