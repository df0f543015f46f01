"""`minidl plot`: a run's pictures, several runs overlaid, or a seed group's bands."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from minidl_cli.cli.common import OUT_FOLDER, RUN_PATH, handle_errors, refuse_out_folder


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=RUN_PATH)
@click.option("--out", type=OUT_FOLDER, default=None,
              help="Where overlaid pictures go (several runs; default: current directory).")
@handle_errors
def plot(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """Redraw a run's pictures into its plots/; overlay several runs' curves into --out.

    Given a seed group, draws the mean curves with a ±1 std band into the group's plots/;
    among several runs, a seed group is drawn as its mean with that band.
    Given a sweep, redraws each point's pictures and draws the test metric against each
    swept key into the sweep's plots/; with --out, only the latter, into --out.
    """
    from minidl_cli import plots, seeds, sweeps
    from minidl_cli.experiment import replot_run, replot_sweep
    from minidl_cli.runs import Run, RunError

    own = run_dirs[0] / "plots" if len(run_dirs) == 1 else None  # where it draws without --out
    refuse_out_folder(out, own)
    if len(run_dirs) == 1 and sweeps.is_sweep(run_dirs[0]):
        for path in replot_sweep(run_dirs[0], out):
            click.echo(path)
        return
    if len(run_dirs) == 1 and seeds.is_group(run_dirs[0]):
        target = out or run_dirs[0] / "plots"
        with _made_for(target):
            drawn = plots.plot_group(seeds.open_group(run_dirs[0]), target)
        for path in drawn:
            click.echo(path)
        return
    if len(run_dirs) == 1 and out is None:
        for path in replot_run(run_dirs[0]):
            click.echo(path)
        return
    swept = next((d for d in run_dirs if sweeps.is_sweep(d)), None)
    if swept is not None:
        raise RunError(f"{swept} is a sweep: plot draws one sweep at a time (minidl plot "
                       f"{swept}); to set several side by side use minidl compare PATH... "
                       "--out DIR")
    items = [_trained_members(d) if seeds.is_group(d) else Run.open(d).path for d in run_dirs]
    out = out or Path.cwd()
    labels = [f"{Path(d).name} (mean ± 1 std)" if isinstance(item, list) else Path(d).name
              for d, item in zip(run_dirs, items, strict=True)]
    with _made_for(out):
        drawn = plots.overlay_runs(items, out, labels)
    for path in drawn:
        click.echo(path)


@contextmanager
def _made_for(out: Path):
    """Create the folder `out` (and its missing parents) for the drawing inside; when the
    drawing is refused or fails, remove again the folders it created that stay empty."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty (something was drawn): kept
                break
        raise


def _trained_members(group: Path) -> list[Path]:
    """A seed group's members that trained an epoch (drawn as their mean ± 1 std)."""
    from minidl_cli import seeds
    from minidl_cli.runs import RunError

    members = [m for m in seeds.open_group(group) if (m / "metrics.csv").is_file()]
    if not members:
        raise RunError(f"{group}: no member of this seed group has trained an epoch; resume "
                       f"it first: minidl train --resume {group}")
    return members
