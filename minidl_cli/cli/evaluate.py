"""`minidl evaluate`: a checkpoint on the train and test sets (into eval.json), or on a file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from minidl_cli.cli.common import (
    OUT_FILE,
    RUN_PATH,
    handle_errors,
    print_group_summary,
    refuse_out,
)


@click.command()
@click.argument("run_dir", type=RUN_PATH)
@click.option("--checkpoint", default=None,
              help="last, best, an epoch number, or a checkpoint file [default: best for a "
                   "run trained with train.early_stopping, else last].")
@click.option("--data", type=click.Path(path_type=Path),
              help="Evaluate on this labelled CSV or Parquet file (the run's feature "
                   "columns and its label) instead of the run's train and test sets; for an "
                   "image run, a folder of class folders or an .npz with x and y.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--out", type=OUT_FILE, default=None,
              help="Write the results to this file instead of the run's eval.json "
                   "(e.g. for a read-only run).")
@handle_errors
def evaluate(run_dir: Path, checkpoint: str | None, data: Path | None, as_json: bool,
             out: Path | None) -> None:
    """Evaluate a run's checkpoint on its train and test sets; write eval.json.

    \b
    With --data FILE: on that file instead, written to eval-<FILE's stem>.json.
    Given a seed group (from --seeds), evaluates every member and prints mean ± std.
    """
    from minidl_cli.data.files import readable_file

    if data is None:
        _evaluate(run_dir, checkpoint, None, as_json, out, None)
        return
    refuse_out(out, run_dir, (data,))
    with readable_file(data) as (path, shown):  # `-` (stdin) or a pipe: read once, copied
        _evaluate(run_dir, checkpoint, path, as_json, out, shown)


def _evaluate(run_dir: Path, checkpoint: str | None, data: Path | None, as_json: bool,
              out: Path | None, shown: str | None) -> None:
    from minidl_cli import seeds
    from minidl_cli.experiment import evaluate_file, evaluate_run

    if seeds.is_group(run_dir):
        if out is not None:
            raise click.UsageError("--out: a seed group writes each member's results into "
                                   "the member; use --json to get them all at once")
        members = seeds.open_group(run_dir)
        results = [evaluate_file(m, data, checkpoint, shown=shown, printed=as_json) if data
                   else evaluate_run(m, checkpoint, printed=as_json)
                   for m in members]
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        splits = _splits(results[0])
        for member, r in zip(members, results, strict=True):
            shown = ", ".join(_headline(r, split) for split in splits)
            click.echo(f"{member.name}: epoch {r['epoch']}, {shown}")
        if data is None:
            print_group_summary([_flat(r) for r in results], results[0]["task"])
        return
    refuse_out(out, run_dir, (data, Path(checkpoint) if checkpoint else None))
    result = (evaluate_file(run_dir, data, checkpoint, out, shown, printed=as_json) if data
              else evaluate_run(run_dir, checkpoint, out, printed=as_json))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_result(result)


def print_result(result: dict) -> None:
    """A table of the splits' metrics; for classification the classes and confusion matrices."""
    from minidl_cli.tasks import format_metric

    click.echo(f"checkpoint {result['checkpoint']} (epoch {result['epoch']})")
    if "data" in result:
        click.echo(f"data {result['data']}")
    splits = _splits(result)
    names = [k for k, v in result[splits[0]].items() if isinstance(v, (int, float))]
    click.echo(f"{'split':<6} " + " ".join(f"{n:>10}" for n in names))
    for split in splits:
        r = result[split]
        click.echo(f"{split:<6} " + " ".join(
            f"{r[n]:>10.6f}" if n == "loss" else f"{format_metric(n, r[n]):>10}"
            for n in names))
    for split in splits:
        for target, values in result[split].get("per_target", {}).items():
            click.echo(f"{split:<6} {target}: " + " ".join(
                f"{n} {format_metric(n, v)}" for n, v in values.items()))
    classes = result.get("classes")
    if classes:
        click.echo("classes: " + ", ".join(f"{i}={name}" for i, name in enumerate(classes)))
    for split in splits:
        if "confusion" in result[split]:
            _print_confusion(split, result[split]["confusion"], classes)


def _print_confusion(split: str, confusion: list[list[int]], classes: list[str] | None) -> None:
    names = classes or [str(i) for i in range(len(confusion))]
    width = max(6, *(len(n) for n in names), *(len(str(v)) for row in confusion for v in row))
    corner = "true \\ predicted"
    label = max(len(corner), *(len(n) for n in names))
    click.echo(f"confusion matrix ({split}; rows: true class, columns: predicted)")
    click.echo(f"  {corner:<{label}} " + " ".join(f"{n:>{width}}" for n in names))
    for name, row in zip(names, confusion, strict=True):
        click.echo(f"  {name:<{label}} " + " ".join(f"{v:>{width}}" for v in row))


def _splits(result: dict) -> list[str]:
    """The parts a result evaluated: train and test, or the file given with --data."""
    return ["file"] if "file" in result else ["train", "test"]


def _headline(result: dict, split: str) -> str:
    from minidl_cli.tasks import by_name, format_metric

    metric = by_name(result["task"]).headline.removeprefix("test_")
    return f"{split} {metric} {format_metric(metric, result[split][metric])}"


def _flat(result: dict) -> dict:
    """{'train_loss': ..., 'test_error': ...} from an evaluation's nested splits."""
    return {f"{s}_{k}": v for s in ("train", "test") for k, v in result[s].items()
            if isinstance(v, (int, float))}
