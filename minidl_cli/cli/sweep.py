"""`minidl train CONFIG --seeds ...`, `--sweep KEY=V1,V2,...` and `--resume SWEEP_OR_GROUP`:
many members at once (a seed group, a sweep's points), each reported as it ends, then the
collection's summary; cli/train.py parses the options and hands over."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

import click

from minidl_cli.cli.common import echo, print_group_summary


def train_sweep(config_path: Path, overrides: list[str], specs: list[str],
                seeds_text: str | None, jobs: int, quiet: bool, trials: int | None = None
                ) -> None:
    """Check every point's config, train the grid (or `trials` points of a search), print
    its summary and the sweep's path."""
    from minidl_cli import search, seeds, sweeps
    from minidl_cli.config import load_config
    from minidl_cli.train import stop_on_signals

    try:
        grid = sweeps.parse_sweeps(specs, overrides)
        if trials is not None:
            search.parse_space(grid)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    ranged = [key for key, values in grid if search.is_range(values)]
    if ranged and trials is None:
        raise click.UsageError(f"--sweep {ranged[0]}: a range is searched, not listed; add "
                               "--trials N (or give the values: --sweep KEY=V1,V2)")
    chosen = seeds.parse_seeds(seeds_text) if seeds_text is not None else None
    if trials is not None:
        with stop_on_signals() as flag:
            sweep, rows = search.run_search(config_path, overrides, grid, trials, chosen, jobs,
                                            _reporter(quiet), flag)
        _report(sweep, rows, flag.signum, sweep_keys=[k for k, _ in grid],
                objective=search.objective_of(load_config(config_path, overrides,
                                                          data=False))[0])
        return
    base_seed = None if chosen is not None else load_config(config_path, overrides,
                                                            data=False)["seed"]
    resolved = sweeps.resolve_points(config_path, overrides, grid, base_seed)
    if chosen is not None:
        seeds.check_seeds([config for _, config in resolved], chosen)
    with stop_on_signals() as flag:
        sweep, rows = sweeps.run_sweep(grid, resolved, chosen, jobs, _reporter(quiet), flag)
    _report(sweep, rows, flag.signum, sweep_keys=[k for k, _ in grid])


def resume_many(path: Path, overrides: list[str], jobs: int, quiet: bool) -> None:
    """Finish every member of a sweep or seed group; print its summary and its path."""
    from minidl_cli import sweeps
    from minidl_cli.train import stop_on_signals

    with stop_on_signals() as flag:
        rows = sweeps.resume(path, overrides, jobs, _reporter(quiet), flag)
    if sweeps.is_sweep(path):
        import json

        info = json.loads((path / sweeps.SWEEP_FILE).read_text())
        _report(path, rows, flag.signum, sweep_keys=info["keys"],
                objective=info.get("search", {}).get("objective"))
    else:
        _report(path, rows, flag.signum, sweep_keys=None)


def train_seeds(config: dict, seeds_text: str, jobs: int, quiet: bool) -> None:
    """Train one run per seed into a group directory, each line as it ends; print the
    group's summary and its path (exit 1 if a seed did not complete)."""
    from minidl_cli import seeds
    from minidl_cli.tasks import by_name, format_metric
    from minidl_cli.train import stop_on_signals

    chosen = seeds.parse_seeds(seeds_text)
    seeds.check_seeds([config], chosen)

    def report(row: dict) -> None:
        if not quiet and row["status"] == "failed":  # its metrics say nothing: its reason does
            echo(f"seed {row['seed']:>4}: failed after {row['epochs']} epochs: "
                 f"{row.get('reason', 'see its meta.json')}", err=True)
        elif not quiet:
            key = by_name(row["task"]).headline
            echo(f"seed {row['seed']:>4}: {key.replace('_', ' ')} "
                 f"{format_metric(key, row[key])} "
                 f"({row['epochs']} epochs, {row['wall_s']:.1f} s, {row['status']})", err=True)

    with stop_on_signals() as flag:
        group, rows = seeds.run_seeds(config, chosen, jobs, report, stop=flag)
    if flag.signum is not None:
        report_interrupted_group(group, rows, flag.signum)
    print_group_summary(rows, next((r["task"] for r in rows if "task" in r), "classification"))
    echo(group)
    if any(row["status"] != "completed" for row in rows):
        sys.exit(1)


def report_interrupted_group(group: Path, rows: list[dict], signum: int) -> None:
    """On stderr, which seeds of `group` (`rows`: its summary rows) completed, were saved
    mid-training, stopped before their first epoch, or never started, and how to finish
    them; the group on stdout. Raises SystemExit(128 + signum), as a signalled command."""
    from minidl_cli.seeds import NOT_STARTED

    def seeds_with(*statuses: str) -> list[int]:
        return [row["seed"] for row in rows if row["status"] in statuses]

    finished, unstarted = seeds_with("completed", "failed"), seeds_with(NOT_STARTED)
    stopped = [row for row in rows if row["status"] in ("interrupted", "running")]
    saved = [row["seed"] for row in stopped if row.get("epochs")]
    begun = [row["seed"] for row in stopped if not row.get("epochs")]  # no epoch trained
    lines = [f"\ninterrupted by {signal.Signals(signum).name}: {len(finished)} of {len(rows)} "
             f"seeds finished; {group / 'summary.csv'} lists every seed and its status"]
    if saved:
        lines.append(f"{_seeds(saved)} {'was' if len(saved) == 1 else 'were'} saved "
                     f"mid-training; resume one with: minidl train --resume "
                     f"{group / f'seed-{saved[0]:04d}'}")
    if begun:
        lines.append(f"{_seeds(begun)} {'was' if len(begun) == 1 else 'were'} stopped before "
                     f"{'its' if len(begun) == 1 else 'their'} first epoch ended: nothing "
                     "trained yet")
    if unstarted:
        lines.append(f"{_seeds(unstarted)} {'was' if len(unstarted) == 1 else 'were'} "
                     "not started")
    if saved or begun or unstarted:
        lines.append(f"finish them with: minidl train --resume {group}")
    echo("\n".join(lines), err=True)
    echo(group)
    sys.exit(128 + signum)


def _seeds(seeds: list[int]) -> str:
    """'seed 3' or 'seeds 2, 3'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _reporter(quiet: bool):
    from minidl_cli.tasks import by_name, format_metric

    def report(point: str, row: dict) -> None:
        if quiet or "task" not in row:
            return
        if row["status"] == "failed":  # its metrics say nothing: why it failed does
            echo(f"{point} seed {row['seed']}: failed after {row['epochs']} epochs: "
                 f"{row.get('reason', 'see its meta.json')}", err=True)
            return
        key = by_name(row["task"]).headline
        echo(f"{point} seed {row['seed']}: {key.replace('_', ' ')} "
             f"{format_metric(key, row[key])} ({row['epochs']} epochs, "
             f"{row.get('wall_s', 0):.1f} s, {row['status']})", err=True)

    return report


def _report(path: Path, rows: list[dict], signum: int | None,
            sweep_keys: list[str] | None, objective: str | None = None) -> None:
    """The summary table (a sweep's points, or a group's seeds); on a signal, what to do
    next and exit 128 + signal; exit 1 when a member did not complete."""
    from minidl_cli.sweeps import FINISHED

    task = next((r["task"] for r in rows if "task" in r), "classification")
    if signum is not None:
        finished = sum(r["status"] in FINISHED for r in rows)
        echo(f"\ninterrupted by {signal.Signals(signum).name}: {finished} of "
             f"{_planned(path, rows, sweep_keys)} finished; {path / 'summary.csv'} lists each "
             f"and its status.\nfinish them with: minidl train --resume {path}", err=True)
        echo(path)
        sys.exit(128 + signum)
    if sweep_keys is None:
        print_group_summary(rows, task)
    else:
        _print_sweep(path, rows, task, objective)
    echo(path)
    if any(row["status"] != "completed" for row in rows):
        sys.exit(1)


def _planned(path: Path, rows: list[dict], sweep_keys: list[str] | None) -> str:
    """'6 trials' (a search, however many it has drawn), '4 points' or '3 seeds'."""
    import json

    if sweep_keys is None:
        return f"{len(rows)} seeds"
    search = json.loads((path / "sweep.json").read_text()).get("search")
    return f"{search['trials']} trials" if search else f"{len(rows)} points"


def _print_sweep(path: Path, rows: list[dict], task: str, objective: str | None) -> None:
    """A sweep's table: each point, its completed seeds, the headline metric's mean ± std
    and its status (the name column as wide as the longest name); then why each failed
    point failed. A search first names its best point by the metric it optimised."""
    from minidl_cli.tasks import by_name, format_metric

    key = by_name(task).headline
    if objective is not None:  # a search: the validation metric it optimised
        done = [r for r in rows if not math.isnan(r.get(f"{objective}_mean", math.nan))]
        if done:
            best = (min if objective.endswith(("loss", "error", "mae", "rmse")) else max)(
                done, key=lambda r: r[f"{objective}_mean"])
            echo(f"best by {objective}: {best['point']} ({best[f'{objective}_mean']:.4f}); "
                 f"compare them all with: minidl compare {path} --metric {objective}")
    width = max([len("point"), *(len(row["point"]) for row in rows)])
    echo(f"{'point':<{width}} seeds {key + ' (mean ± std)':>24}  status")
    for row in rows:
        mean, std = row.get(f"{key}_mean", math.nan), row.get(f"{key}_std", math.nan)
        shown = ("-" if not row["seeds"] or math.isnan(mean) else
                 f"{format_metric(key, mean)} ± {format_metric(key, std)}")
        echo(f"{row['point']:<{width}} {row['seeds']:>5} {shown:>24}  {row['status']}")
    for row in rows:
        if row.get("reason"):
            echo(f"{row['point']} failed: {row['reason']}", err=True)
