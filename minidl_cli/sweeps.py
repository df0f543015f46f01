"""Sweeps: a grid of settings, each point a run (or a seed group), and their summary.

    minidl train configs/disk.yaml --sweep optimizer.lr=0.01,0.1 --sweep model.0.out_features=8,16

    <runs_dir>/<name>-sweep-<YYYYMMDD-HHMMSS>/
        sweep.json      the grid: keys, values, seeds, and each point's name, values and config
        config.yaml     the config every point starts from, for reference
        optimizer.lr=0.01,model.0.out_features=8/ ...   a run, or a seed group with --seeds
        summary.csv     one row per point: its values, the number of seeds, mean and std of
                        each final metric

Hydra multirun's syntax: `KEY=V1,V2,...`, each value parsed as YAML (as an override is);
commas inside brackets or quotes do not split. The members train as seed groups' do
(seeds.run_members: --jobs processes, Ctrl-C saves the running ones and never starts the
queued ones), and `resume` finishes every member of a sweep or seed group not completed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli import seeds as groups
from minidl_cli.runs import (
    SWEEP_FILE,
    RunError,
    atomic_write,
    create_run_dir,
    locked,
    write_json_atomic,
)

if TYPE_CHECKING:
    from minidl_cli.train import StopFlag


def is_sweep(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def point_dirs(sweep: Path) -> list[Path]:
    """The folders of a sweep's points that exist (a point not started has none)."""
    info = json.loads((Path(sweep) / SWEEP_FILE).read_text())
    return [Path(sweep) / p["name"] for p in info["points"] if (Path(sweep) / p["name"]).is_dir()]


# Keys that are not settings of the experiment, and what to do instead.
NOT_SWEPT = {
    "seed": "every point of a sweep trains with the same seed, so the points differ only in "
            "the swept keys; repeat each point over seeds with --seeds 1,2 instead",
    "name": "a sweep is one directory named after the config; run separate commands with "
            "name=... to get separately named runs",
    "runs_dir": "a sweep is one directory inside one runs_dir; run separate commands with "
                "runs_dir=... to put runs in different places",
}


def parse_sweeps(specs: list[str], overrides: list[str] = ()) -> list[tuple[str, list[str]]]:
    """`KEY=V1,V2,...` specs -> [(key, [value texts])]; ValueError (one line) for a spec
    without `=`, an empty value list, a key that is not a setting (NOT_SWEPT), a key swept
    twice or also given as an override."""
    grid: list[tuple[str, list[str]]] = []
    fixed = {o.partition("=")[0].strip() for o in overrides}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = re.sub(r"\[(\d+)\]", r".\1", key.strip())
        if not sep or not key:
            raise ValueError(f"--sweep {spec!r}: expected KEY=V1,V2,..., e.g. "
                             "--sweep optimizer.lr=0.01,0.1")
        values = [v.strip() for v in split_top_level(text)]
        if not values or any(v == "" for v in values):
            raise ValueError(f"--sweep {spec!r}: empty value in the list; give the values "
                             f"separated by commas, e.g. --sweep {key}=1,2")
        if key in NOT_SWEPT:
            raise ValueError(f"--sweep {key}: {NOT_SWEPT[key]}")
        twice = repeated(values)
        if twice:
            raise ValueError(f"--sweep {spec!r}: {twice[1]} repeats {twice[0]} (the same "
                             "value); list each value once")
        if key in (k for k, _ in grid):
            raise ValueError(f"--sweep {key}: the key is given twice; list all its values in "
                             f"one --sweep {key}=V1,V2,...")
        if key in fixed:
            raise ValueError(f"--sweep {key}: the key is also set by the override {key}=...; "
                             "leave one of them out")
        grid.append((key, values))
    return grid


def repeated(texts: list[str]) -> tuple[str, str] | None:
    """The first two of `texts` that are the same value (0.1 and .10, 8 and 8.0, as YAML
    or a number reads them), or None."""
    seen: dict[str, str] = {}
    for text in texts:
        value = parse_value(text)
        if isinstance(value, str):  # 1e-3: a number YAML 1.1 leaves a string
            try:
                value = float(value)
            except ValueError:
                pass
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        key = repr(float(value)) if number else json.dumps(value, sort_keys=True, default=str)
        if key in seen:
            return seen[key], text
        seen[key] = text
    return None


def split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def points(grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(values for _, values in grid))]


def point_name(values: dict[str, str]) -> str:
    """A point's folder name from its values, as Hydra names its override dirs:
    `optimizer.lr=0.1,model.0.out_features=16` (characters unsafe in a path become _)."""
    name = ",".join(f"{k}={v}" for k, v in values.items())
    return re.sub(r"[^\w.=,+\-]", "_", name)[:200]


def resolve_points(config_path: Path, overrides: list[str], grid: list[tuple[str, list[str]]],
                   seed: int | None) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(values, resolved config) of every point, all checked before anything trains: a bad
    key or value is a ConfigError naming the point. Every point gets the same seed."""
    from minidl_cli.config import load_yaml

    raw = load_yaml(config_path)
    return [(values, resolve_point(raw, config_path, overrides, values, seed))
            for values in points(grid)]


def resolve_point(raw: dict[str, Any], config_path: Path, overrides: list[str],
                  values: dict[str, str], seed: int | None, data: bool = True
                  ) -> dict[str, Any]:
    """The resolved config of one point: the config file's mapping `raw` (read from
    `config_path`, which names the run and anchors relative paths) with the overrides, the
    point's `KEY=VALUE`s and `seed` (None: the config's own) applied. ConfigError naming the
    point (`--sweep point KEY=VALUE, ...: problem`) when it is not a valid config."""
    from minidl_cli.config import ConfigError, apply_overrides, resolve

    assignments = [f"{k}={v}" for k, v in values.items()]
    try:
        return resolve(apply_overrides(raw, [*overrides, *assignments,
                                             *([f"seed={seed}"] if seed is not None else [])]),
                       config_path, data)
    except ConfigError as e:
        raise ConfigError([f"--sweep point {', '.join(assignments)}: {p}"
                           for p in e.problems]) from None


def run_sweep(grid: list[tuple[str, list[str]]],
              resolved: list[tuple[dict[str, str], dict[str, Any]]],
              seeds: list[int] | None, jobs: int = 1,
              on_done: Callable[[str, dict], None] | None = None,
              stop: StopFlag | None = None) -> tuple[Path, list[dict]]:
    """Train every point (a run, or a seed group over `seeds`) into a new sweep directory,
    in `jobs` processes; write sweep.json and summary.csv. Stopped (`stop()` true), the
    queued members never start and the running ones are saved, as in a seed group."""
    base = resolved[0][1]
    sweep = create_run_dir(Path(base["runs_dir"]), f"{base['name']}-sweep")
    with locked(sweep):  # a --resume of it from another process is refused meanwhile
        return sweep, _start_sweep(sweep, grid, resolved, seeds, jobs, on_done, stop)


def _start_sweep(sweep: Path, grid: list[tuple[str, list[str]]],
                 resolved: list[tuple[dict[str, str], dict[str, Any]]],
                 seeds: list[int] | None, jobs: int,
                 on_done: Callable[[str, dict], None] | None,
                 stop: StopFlag | None) -> list[dict]:
    """run_sweep's work in the new, locked directory `sweep`; the summary rows."""
    from minidl_cli.config import dump_yaml

    base = resolved[0][1]
    names = _unique([point_name(values) for values, _ in resolved])
    info = {"kind": "minidl-sweep", "keys": [k for k, _ in grid],
            "values": {k: [parse_value(v) for v in vs] for k, vs in grid}, "seeds": seeds,
            "points": [{"name": name, "values": {k: parse_value(v) for k, v in values.items()},
                        "config": config}
                       for name, (values, config) in zip(names, resolved, strict=True)],
            "status": "running"}
    write_json_atomic(sweep / SWEEP_FILE, info)
    atomic_write(sweep / "config.yaml", dump_yaml(base).encode())
    work, owners = [], []
    for name, (_, config) in zip(names, resolved, strict=True):
        if seeds is None:
            (sweep / name).mkdir()
            work.append((groups.train_member, (config, sweep / name)))
            owners.append((name, None))
            continue
        (sweep / name).mkdir()
        for cfg in groups.prepare_group(sweep / name, config, seeds):
            work.append((groups.train_member,
                         (cfg, sweep / name / groups.member_name(cfg["seed"]))))
            owners.append((name, cfg["seed"]))
    return _finish_members(sweep, info, work, owners, jobs, on_done, stop)


def finish_sweep(sweep: Path, info: dict, rows: dict[tuple[str, int | None], dict]
                 ) -> list[dict]:
    """Each point's group finished (summary.csv, group.json) and the sweep's summary.csv and
    status written; the summary rows. The sweep is `completed` once no point is left to
    train (each completed or failed; a search: all its trials drawn), else `interrupted`."""
    summary = [point_summary(point, _point_rows(sweep, info, point, rows))
               for point in info["points"]]
    if "search" in info:  # what the search optimised: never a test metric
        from minidl_cli.search import objective

        metric = info["search"]["objective"]
        for point, row in zip(info["points"], summary, strict=True):
            row[f"{metric}_mean"] = objective(sweep / point["name"], metric)
    write_summary(sweep, info["keys"], summary, info.get("search", {}).get("objective"))
    drawn = len(info["points"]) >= info.get("search", {}).get("trials", 0)
    done = drawn and all(r["status"] in FINISHED for r in summary)
    write_json_atomic(sweep / SWEEP_FILE, {**info, "status": "completed" if done else
                                           "interrupted"})
    return summary


FINISHED = ("completed", "failed", "partly failed")  # a point with nothing left to train


def _point_rows(sweep: Path, info: dict, point: dict,
                rows: dict[tuple[str, int | None], dict]) -> list[dict]:
    """The rows of a point's members (its seed group finished on disk): as they finished
    (`rows`), else read back from their files; a search's impossible draw is one failed
    member with its reason."""
    name, folder = point["name"], sweep / point["name"]
    if point.get("failed"):
        return [{"seed": None, "epochs": 0, "status": "failed", "reason": point["failed"]}]
    if info["seeds"] is None:
        row = rows.get((name, None)) or groups.member_state(0, folder)
        if row["status"] == groups.NOT_STARTED and folder.is_dir():
            _remove_if_empty(folder)
        return [row]
    if not folder.is_dir():  # a search stopped before it prepared the point's group
        return [{"seed": s, "epochs": 0, "status": groups.NOT_STARTED} for s in info["seeds"]]
    group_rows = {seed: rows[(name, seed)] for seed in info["seeds"] if (name, seed) in rows}
    groups.finish_group(folder, info["seeds"], group_rows)
    return list(group_rows.values())


def point_summary(point: dict, members: list[dict]) -> dict:
    """A point's summary row: its values, how many members completed, mean and std of
    each final metric over them, the point's status (`not started` when none of its
    members started) and, when a member failed, why."""
    from minidl_cli.tasks import by_name

    done = [r for r in members if r["status"] == "completed"]
    task = next((r["task"] for r in members if "task" in r), None)
    row: dict[str, Any] = {**point["values"], "point": point["name"], "seeds": len(done)}
    if task is not None:
        row["task"] = task
        for key in by_name(task).summary_keys():
            stats = groups.statistics([float(r[key]) for r in done if key in r])
            row[f"{key}_mean"], row[f"{key}_std"] = stats["mean"], stats["std"]
    row["status"] = combined_status({r["status"] for r in members})
    failed = [r for r in members if r["status"] == "failed"]
    if failed:
        seed = failed[0]["seed"]
        row["reason"] = (f"seed {seed}: " if len(members) > 1 and seed is not None else ""
                         ) + failed[0].get("reason", "see the point's meta.json")
    return row


def combined_status(statuses: set[str]) -> str:
    """The status of a point (or a seed group) from its members': completed, not started,
    failed (all of them), interrupted (one is left to train: interrupted, running or not
    started while another did) or partly failed (completed and failed)."""
    if len(statuses) <= 1:
        return next(iter(statuses), groups.NOT_STARTED)
    return "interrupted" if statuses - {"completed", "failed"} else "partly failed"


def write_summary(sweep: Path, keys: list[str], rows: list[dict],
                  objective: str | None = None) -> None:
    """summary.csv: the keys' values, point, seeds, (a search's objective,) each final
    metric's mean and std (empty where no member completed), status, and why a failed
    point failed."""
    from minidl_cli.tasks import by_name

    task = next((r["task"] for r in rows if "task" in r), "classification")
    metrics = [f"{k}_{s}" for k in by_name(task).summary_keys() for s in ("mean", "std")]
    buffer = io.StringIO()
    searched = [f"{objective}_mean"] if objective else []
    writer = csv.DictWriter(buffer, [*keys, "point", "seeds", *searched, *metrics, "status",
                                     "reason"],
                            lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: "" if isinstance(v, float) and math.isnan(v) else v  # no value
                       for k, v in row.items()} for row in rows])
    atomic_write(sweep / "summary.csv", buffer.getvalue().encode())


# --- finishing a sweep or a seed group ---

def resume(path: Path, overrides: list[str], jobs: int = 1,
           on_done: Callable[[str, dict], None] | None = None,
           stop: StopFlag | None = None) -> list[dict]:
    """Finish every member of the sweep or seed group at `path` that is not completed
    (resumed from its last.pt, or started when it never was); with train.epochs=N, extend
    every member to N epochs too. Completed-early, failed and finished members stay as they
    are. Rewrites the summaries; the rows (per point of a sweep, per seed of a group)."""
    from minidl_cli.experiment import RESUMABLE_KEYS

    for override in overrides:
        key = override.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise RunError(f"cannot change {key} when resuming {path}: only "
                           f"{', '.join(sorted(RESUMABLE_KEYS))} may change (for other "
                           "settings start a new sweep)")
    if not is_sweep(path) and not groups.is_group(path):
        raise RunError(f"{path} is neither a sweep nor a seed group")
    # one process at a time: a sweep (the whole of it, when `path` is one of its points)
    with locked(path.parent if is_sweep(path.parent) else path):
        if is_sweep(path):
            return _resume_sweep(path, overrides, jobs, on_done, stop)
        return _resume_group(path, overrides, jobs, on_done, stop)


def _resume_sweep(path: Path, overrides: list[str], jobs: int,
                  on_done: Callable[[str, dict], None] | None,
                  stop: StopFlag | None) -> list[dict]:
    """resume() of a sweep: its points' members not completed, then its summary; a search
    then draws its missing trials."""
    info = json.loads((path / SWEEP_FILE).read_text())
    swept = [o.partition("=")[0].strip() for o in overrides
             if o.partition("=")[0].strip() in info["keys"]]
    if swept:
        raise RunError(f"cannot set {swept[0]} when resuming {path}: it is swept there "
                       f"({', '.join(map(str, info['values'][swept[0]]))}), each point has its "
                       "own; resume a point on its own, or start a new sweep")
    work, owners = [], []
    for point in info["points"]:
        folder = path / point["name"]
        if point.get("failed"):  # a search's draw that no config allows: nothing to train
            continue
        if info["seeds"] is None:
            members = [(folder, point["config"], None)]
        else:
            members = [(folder / groups.member_name(s), {**point["config"], "seed": s}, s)
                       for s in info["seeds"]]
            folder.mkdir(exist_ok=True)
        for member, config, seed in members:
            job = member_work(member, config, overrides)
            if job is not None:
                work.append(job)
                owners.append((point["name"], seed))
    summary = _finish_members(path, info, work, owners, jobs, on_done, stop)
    if len(info["points"]) < info.get("search", {}).get("trials", 0) and not (
            stop is not None and stop()):
        from minidl_cli.search import search_trials

        summary = search_trials(path, info, overrides, jobs, on_done, stop)
    return summary


def _resume_group(path: Path, overrides: list[str], jobs: int,
                  on_done: Callable[[str, dict], None] | None,
                  stop: StopFlag | None) -> list[dict]:
    """resume() of a seed group: its members not completed, then its summary."""
    from minidl_cli.config import load_yaml

    info = json.loads((path / groups.GROUP_FILE).read_text())
    base = load_yaml(path / "config.yaml")
    work, owners = [], []
    for seed in info["seeds"]:
        job = member_work(path / groups.member_name(seed), {**base, "seed": seed}, overrides)
        if job is not None:
            work.append(job)
            owners.append(seed)
    found: dict[int, dict] = {}

    def done(i: int, row: dict) -> None:
        found[owners[i]] = row
        if on_done and row["status"] != groups.NOT_STARTED:
            on_done(path.name, row)

    try:
        groups.run_members(work, jobs, done, stop)
    finally:
        rows = {s: found.get(s) or groups.member_state(s, path / groups.member_name(s))
                for s in info["seeds"]}
        groups.finish_group(path, info["seeds"], rows)
    return [rows[s] for s in info["seeds"]]


def _finish_members(sweep: Path, info: dict, work: list, owners: list, jobs: int,
                    on_done: Callable[[str, dict], None] | None,
                    stop: StopFlag | None) -> list[dict]:
    """Run `work` (jobs at a time; `owners[i]` is the (point, seed) of work[i]), then write
    the sweep's summary: each member's row as it finished, or read back from its files for
    the members not in `work` (a resumed sweep's completed ones)."""
    rows: dict[tuple[str, int | None], dict] = {}

    def done(i: int, row: dict) -> None:
        rows[owners[i]] = row
        if on_done and row["status"] != groups.NOT_STARTED:
            on_done(owners[i][0], row)

    try:
        groups.run_members(work, jobs, done, stop)
    finally:
        for point in info["points"]:
            folder = sweep / point["name"]
            for seed in info["seeds"] or [None]:
                member = folder if seed is None else folder / groups.member_name(seed)
                if (point["name"], seed) not in rows:
                    rows[(point["name"], seed)] = groups.member_state(seed or 0, member)
        summary = finish_sweep(sweep, info, rows)
    return summary


def member_work(member: Path, config: dict[str, Any], overrides: list[str]
                ) -> tuple[Callable[..., dict], tuple] | None:
    """What finishing one member takes: (train_member, ...) when it never started,
    (resume_member, ...) when it stopped before its epochs, None when there is nothing to
    do (completed and not extended, stopped early, or failed)."""
    from minidl_cli.config import apply_overrides

    try:
        meta = json.loads((member / "meta.json").read_text())
    except (OSError, ValueError):
        meta = None
    if meta is None:  # never started (or stopped before its first file): start afresh
        if member.exists() and any(member.iterdir()):
            shutil.rmtree(member / "checkpoints", ignore_errors=True)
        _remove_if_empty(member)
        member.mkdir(parents=True, exist_ok=True)
        return groups.train_member, (apply_overrides(config, overrides), member)
    if meta.get("status") == "failed" or meta.get("stopped_early_at"):
        return None
    epochs, done = apply_overrides(config, overrides)["train"]["epochs"], meta.get(
        "epochs_completed", 0)
    extending = any(o.partition("=")[0].strip() == "train.epochs" for o in overrides)
    if meta.get("status") == "completed" and done >= epochs and not (extending and done > epochs):
        return None
    if done >= epochs:  # checked before anything trains: no member half-way when refused
        raise RunError(f"{member} has already trained {done} epochs, and train.epochs is "
                       f"{epochs}; pass train.epochs=N with N > {done} to finish it")
    return groups.resume_member, (member, overrides)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def parse_value(text: str) -> Any:
    """A --sweep value as YAML reads it (8 -> 8, [1, 2] -> a list), or the text itself
    where it is not YAML."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text

