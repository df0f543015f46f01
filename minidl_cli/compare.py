"""`minidl compare`: runs, seed groups and sweeps side by side, best first.

Each entry is a run, a seed group or a sweep point (a sweep expands into its points). Its
row holds the config keys whose values differ between the entries, each final metric (the
last metrics.csv row of every member that has one) as mean and std over its seeds, the
epochs trained and the training time (metrics.csv's elapsed_s). Everything is read from
the directories' files: no checkpoint is loaded, so comparing needs no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minidl_cli.runs import RunError, kept_metrics

IGNORED_KEYS = ("seed", "runs_dir", "name")  # differ between any two runs: not settings
LOWER_IS_BETTER = ("loss", "error", "mae", "rmse")


@dataclass
class Entry:
    """One row of the comparison: a run, a seed group or a sweep point."""

    label: str  # its folder's name; a sweep point's with its sweep's: SWEEP/POINT
    path: str
    config: dict[str, Any]  # flattened: dotted keys -> values
    task: str
    members: list[dict[str, float]] = field(default_factory=list)  # each member's last row
    status: str = "completed"  # or running, interrupted, failed, not started (entry_status)


def collect(paths: list[Path]) -> list[Entry]:
    """The entries of every path (a run, a seed group, or a sweep's points, those never
    started included), each once however often it is named; RunError for a path that is
    none of them, for entries of different tasks, or when no entry has a finished epoch."""
    from minidl_cli import seeds, sweeps

    entries: list[Entry] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if sweeps.is_sweep(path):
            found = _sweep_entries(path)
        elif seeds.is_group(path) or (path / "meta.json").is_file():
            found = [_entry(path, path.absolute().name)]
            found[0].status = entry_status(path)
        else:
            raise RunError(f"{path} is not a run, a seed group or a sweep (no meta.json, "
                           "group.json or sweep.json); pass directories that minidl train made")
        for entry in found:
            if Path(entry.path).resolve() not in seen:
                seen.add(Path(entry.path).resolve())
                entries.append(entry)
    fill_defaults(entries)
    return _one_task(entries, paths)


def fill_defaults(entries: list[Entry]) -> None:
    """Complete each entry's config with every option another entry's config has and its
    own lacks, at that option's default: an option added to minidl after the run was made
    (loss.ignore_index), which the run trained at, as resume reads it. Only where the
    entry's config has the option's section or component; otherwise the key stays absent."""
    keys = {key for entry in entries for key in entry.config}
    for entry in entries:
        for key in sorted(keys - entry.config.keys()):
            default = option_default(key, entry.config)
            if default is not None:
                entry.config[key] = default[0]


def option_default(key: str, config: dict[str, Any]) -> tuple[Any] | None:
    """(default,) of the flattened option `key` (loss.ignore_index, model.2.bias,
    train.threads) for the component that `config` (flattened) names at its prefix; None
    when the config has no such section or component, it is unknown here (a plugin's,
    its plugin not imported), or the option has no default."""
    from minidl_cli import registry
    from minidl_cli.config.hints import is_plain, plain
    from minidl_cli.config.resolver import (
        EARLY_STOPPING_OPTIONS,
        STANDARDIZE,
        STANDARDIZE_TARGET,
        TRAIN_OPTIONS,
    )

    prefix, _, name = key.rpartition(".")
    sections = {"train": TRAIN_OPTIONS, "train.early_stopping": EARLY_STOPPING_OPTIONS}
    kinds = {"data": "dataset", "loss": "loss", "optimizer": "optimizer",
             "scheduler": "scheduler"}
    if prefix in sections:
        if not any(k.startswith(f"{prefix}.") for k in config):
            return None  # no such section (train.early_stopping: null)
        options = sections[prefix]
    else:
        kind = kinds.get(prefix) or ("layer" if prefix.startswith("model.") else None)
        component = config.get(f"{prefix}.type")
        if kind is None or not isinstance(component, str):
            return None
        try:
            options = [*registry.lookup(kind, component).options(),
                       *([STANDARDIZE, STANDARDIZE_TARGET] if kind == "dataset" else [])]
        except ValueError:
            return None
    for option in options:
        if option.name == name and not option.required and is_plain(option.default):
            return (plain(option.default),)
    return None


def _one_task(entries: list[Entry], paths: list[Path]) -> list[Entry]:
    """`entries`, those without a finished epoch given the task of the others (their own
    is not on disk); RunError when they are of different tasks or none has an epoch."""
    tasks = sorted({e.task for e in entries if e.members})
    if not tasks:
        counts = {s: sum(e.status == s for e in entries) for s in {e.status for e in entries}}
        found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no points"
        raise RunError(f"{', '.join(map(str, paths))}: no run has finished an epoch yet "
                       f"({found}), so there is nothing to compare or draw; train or resume "
                       "them first")
    if len(tasks) > 1:
        which = {t: next(e.label for e in entries if e.task == t and e.members) for t in tasks}
        raise RunError("cannot compare runs of different tasks: "
                       + ", ".join(f"{t} ({which[t]})" for t in tasks)
                       + "; compare each task's runs separately")
    for entry in entries:
        entry.task = tasks[0]
    return entries


def _sweep_entries(sweep: Path) -> list[Entry]:
    """A sweep's points as entries, each with its status; a point never started (or a
    search's draw that no config allows) has no members."""
    from minidl_cli import sweeps
    from minidl_cli.config import ConfigError, apply_overrides, load_yaml

    info = json.loads((sweep / sweeps.SWEEP_FILE).read_text())
    entries = []
    for point in info["points"]:
        config = point["config"]
        if config is None:  # a failed draw: the sweep's config with the drawn values
            try:
                config = apply_overrides(load_yaml(sweep / "config.yaml"), [
                    f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                    for k, v in point["values"].items()])
            except ConfigError:
                config = load_yaml(sweep / "config.yaml")
        entry = _entry(sweep / point["name"], f"{sweep.name}/{point['name']}", config)
        entry.status = "failed" if point.get("failed") else entry_status(sweep / point["name"])
        entries.append(entry)
    return entries


def entry_status(path: Path) -> str:
    """A run's status as its meta.json says (running, interrupted, completed, failed), or a
    seed group's from its members' (sweeps.combined_status); `not started` without one."""
    from minidl_cli import seeds, sweeps

    members = [path]
    if seeds.is_group(path):  # every seed (those never started are not among its members)
        group = json.loads((path / seeds.GROUP_FILE).read_text())
        members = [path / seeds.member_name(seed) for seed in group["seeds"]]
    statuses = set()
    for member in members:
        try:
            statuses.add(json.loads((member / "meta.json").read_text())["status"])
        except (OSError, ValueError, KeyError):
            statuses.add(seeds.NOT_STARTED)
    return sweeps.combined_status(statuses)


def _entry(path: Path, label: str, config: dict | None = None) -> Entry:
    """A run or a seed group at `path` as one entry."""
    from minidl_cli import seeds
    from minidl_cli.config import load_yaml

    members = seeds.member_dirs(path) if seeds.is_group(path) else [path]
    if config is None:
        config = load_yaml((path if seeds.is_group(path) else members[0]) / "config.yaml")
    rows, task = [], None
    for member in members:
        try:
            meta = json.loads((member / "meta.json").read_text())
        except (OSError, ValueError):
            continue  # never started
        row = kept_metrics(member)  # the last epoch's, or the best with early stopping
        if row is None:
            continue  # no epoch yet
        task = meta.get("task", "classification")
        for split in ("train", "val", "test"):  # classification's error, as summaries show
            if f"{split}_accuracy" in row:
                row[f"{split}_error"] = 1 - row[f"{split}_accuracy"]
        rows.append(row)
    if task is None:
        try:
            task = json.loads((members[0] / "meta.json").read_text()).get("task")
        except (OSError, ValueError, IndexError):
            pass
    layers = config.get("model") or []
    described = {"model": "-".join(str(layer.get("type") if isinstance(layer, dict) else layer)
                                   for layer in layers)}
    return Entry(label, str(path), {**described, **_flatten(config)},
                 task or "classification", rows)


def default_metric(task: str) -> str:
    """The test accuracy for classification; the test loss for regression and language
    models (a language model's accuracy says little of its text)."""
    return "test_accuracy" if task == "classification" else "test_loss"


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def table(entries: list[Entry], metric: str | None = None) -> list[dict[str, Any]]:
    """One dict per entry, best first by `metric`: `run` (its label), `path`, the varied
    keys, `seeds` (members with a finished epoch), `status`, `<metric>_mean` /
    `<metric>_std` of each final metric, `epochs`, `train_s`. ValueError when `metric` is
    not a column of the runs."""
    from minidl_cli.seeds import statistics

    if not entries:
        return []
    task = entries[0].task
    metric = metric or default_metric(task)
    names = _metric_names(entries)
    if metric not in names:
        raise ValueError(f"--metric {metric}: not a metric of these runs; choose one of "
                         f"{', '.join(names)}")
    keys = varied_keys(entries)
    rows = []
    for entry in entries:
        row: dict[str, Any] = {"run": entry.label, "path": entry.path,
                               **{k: entry.config.get(k) for k in keys},
                               "seeds": len(entry.members), "status": entry.status}
        for name in [*names, "epoch", "elapsed_s"]:
            stats = statistics([m[name] for m in entry.members if name in m])
            out = {"epoch": "epochs", "elapsed_s": "train_s"}.get(name, name)
            row[f"{out}_mean"], row[f"{out}_std"] = stats["mean"], stats["std"]
        rows.append(row)
    sign = 1 if lower_is_better(metric) else -1
    rows.sort(key=lambda r: (math.isnan(r[f"{metric}_mean"]), sign * r[f"{metric}_mean"]
                             if not math.isnan(r[f"{metric}_mean"]) else 0))
    return rows


def _metric_names(entries: list[Entry]) -> list[str]:
    """The final metrics the entries record: test first, then validation, then training."""
    seen = {k for e in entries for m in e.members for k in m}
    order = {"test": 0, "val": 1, "train": 2}
    names = [k for k in seen if k.split("_", 1)[0] in order]
    return sorted(names, key=lambda k: (order[k.split("_", 1)[0]], k))


def varied_keys(entries: list[Entry]) -> list[str]:
    """The flattened config keys whose values are not the same in every entry, less the
    sizes a layer reads off its input's shape (they follow the varied keys). Entries of
    different networks differ in `model`, their layer types (linear-relu-linear), instead
    of in every layer's options."""
    keys: list[str] = []
    for entry in entries:
        keys += [k for k in entry.config if k not in keys]
    varied: list[str] = []
    networks = len({e.config.get("model") for e in entries})  # layer types, e.g. linear-relu
    for key in keys:
        column = [json.dumps(e.config.get(key), sort_keys=True) for e in entries]
        if key.split(".", 1)[0] in IGNORED_KEYS or len(set(column)) == 1:
            continue
        if networks > 1 and key.startswith("model."):
            continue  # different networks: the `model` column says which; --json has no more
        if any(_inferred(key, e.config) for e in entries):
            continue  # read off the input's shape (in_features after out_features or
            # block_size): it follows a varied key, it is not one
        varied.append(key)
    return varied


def _inferred(key: str, config: dict[str, Any]) -> bool:
    """Whether the flattened `key` (model.2.in_features) is an argument its layer reads off
    its input's shape (the layer's declared `inferred` arguments)."""
    from minidl_cli import registry

    prefix, _, arg = key.rpartition(".")
    layer = config.get(f"{prefix}.type")
    if not prefix.startswith("model.") or not isinstance(layer, str):
        return False
    try:
        return arg in registry.lookup("layer", layer).inferred
    except ValueError:  # a plugin's layer, its plugin not imported here
        return False


def draw(rows: list[dict[str, Any]], keys: list[str], metric: str, out: Path) -> list[Path]:
    """`<metric>-vs-<key>.png` in `out` for each varied key: the metric's mean against the
    key's values, with error bars of one std over seeds; one line per combination of the
    other varied keys. Numbers go on a numeric axis (a log one when they span a decade or
    more), anything else as categories."""
    from minidl_cli.plots.canvas import color, default_style, legend_below, new_figure, save

    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if not math.isnan(r[f"{metric}_mean"])]
    paths = []
    for key in keys:
        numeric = all(isinstance(r[key], (int, float)) and not isinstance(r[key], bool)
                      for r in rows)
        labels = sorted({json.dumps(r[key]) for r in rows})
        lines, joined = series(rows, key, keys)
        with default_style():
            fig = new_figure(6, 4)
            ax = fig.add_subplot()
            for i, (label, members) in enumerate(sorted(lines.items())):
                if numeric:
                    members.sort(key=lambda r: r[key])
                xs = [r[key] if numeric else labels.index(json.dumps(r[key])) for r in members]
                ax.errorbar(xs, [r[f"{metric}_mean"] for r in members],
                            yerr=[r[f"{metric}_std"] for r in members],
                            fmt="o-" if joined else "o", capsize=4, color=color(i),
                            label=label or None)
            if not numeric:
                ax.set_xticks(range(len(labels)), [s.strip('"') for s in labels])
            values = [r[key] for r in rows] if numeric else []
            if values and min(values) > 0 and max(values) / min(values) >= 10:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(metric)
            ax.set_title(f"{metric} against {key} (mean ± std over seeds)", fontsize=10)
            if any(lines):
                legend_below(fig, ax, ncols=2)
            paths.append(save(fig, out / f"{metric}-vs-{key.replace('/', '_')}.png"))
    return paths


def series(rows: list[dict[str, Any]], key: str, keys: list[str]
           ) -> tuple[dict[str, list[dict]], bool]:
    """The lines of the picture against `key` and whether to join their points: the rows
    grouped by the values of the other varied keys, labelled `k=v, ...` (floats to 4
    significant digits). Where no two rows share those values (a random search's trials)
    every row is a marker of one unlabelled series ("") instead of a one-point line and
    a legend entry each."""
    others = [k for k in keys if k != key]
    lines: dict[str, list[dict]] = {}
    for r in rows:
        label = ", ".join(f"{k}={f'{r[k]:.4g}' if isinstance(r[k], float) else r[k]}"
                          for k in others)
        lines.setdefault(label, []).append(r)
    if len(lines) > 1 and all(len(members) == 1 for members in lines.values()):
        return {"": list(rows)}, False
    return lines, True


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {k: v for key, value in tree.items()
                for k, v in _flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree:
        return {k: v for i, value in enumerate(tree)
                for k, v in _flatten(value, f"{prefix}{i}.").items()}
    return {prefix[:-1]: tree}
