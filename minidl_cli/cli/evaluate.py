"""`minidl evaluate`: a checkpoint on the train and test sets, into eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from minidl_cli.cli.common import RUN_PATH, handle_errors, print_group_summary


@click.command()
@click.argument("run_dir", type=RUN_PATH)
@click.option("--checkpoint", default="last", show_default=True,
              help="last, best, an epoch number, or a checkpoint file.")
@click.option("--json", "as_json", is_flag=True, help="Print eval.json instead of a table.")
@handle_errors
def evaluate(run_dir: Path, checkpoint: str, as_json: bool) -> None:
    """Evaluate a run's checkpoint on its train and test sets; write eval.json.

    Given a seed group (from --seeds), evaluates every member and prints mean ± std.
    """
    from minidl_cli import seeds
    from minidl_cli.experiment import evaluate_run

    if seeds.is_group(run_dir):
        results = [evaluate_run(m, checkpoint) for m in seeds.open_group(run_dir)]
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        for member, r in zip(seeds.open_group(run_dir), results, strict=True):
            click.echo(f"{member.name}: epoch {r['epoch']}, train error "
                       f"{r['train']['error']:.2%}, test error {r['test']['error']:.2%}")
        print_group_summary([{f"{s}_{k}": r[s][k] for s in ("train", "test")
                               for k in ("error", "loss")} for r in results])
        return
    result = evaluate_run(run_dir, checkpoint)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"checkpoint {result['checkpoint']} (epoch {result['epoch']})")
    click.echo(f"{'split':<6} {'loss':>10} {'accuracy':>9} {'error':>8}")
    for split in ("train", "test"):
        r = result[split]
        click.echo(f"{split:<6} {r['loss']:>10.6f} {r['accuracy']:>9.2%} {r['error']:>8.2%}")
    for split in ("train", "test"):
        click.echo(f"confusion matrix ({split}; rows: true class, columns: predicted)")
        for i, row in enumerate(result[split]["confusion"]):
            click.echo(f"  {i:>3}: " + " ".join(f"{n:>6}" for n in row))
