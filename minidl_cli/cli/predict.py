"""`minidl predict`: a run's checkpoint on new rows, as CSV."""

from __future__ import annotations

from pathlib import Path

import click

from minidl_cli.cli.common import RUN_PATH, handle_errors

INPUT_PATH = click.Path(path_type=Path, dir_okay=False)


@click.command()
@click.argument("run_dir", type=RUN_PATH)
@click.argument("input_file", metavar="INPUT", type=INPUT_PATH)
@click.option("--checkpoint", default="last", show_default=True,
              help="last, best, an epoch number, or a checkpoint file.")
@click.option("--out", type=INPUT_PATH, help="Write the CSV here instead of to stdout.")
@handle_errors
def predict(run_dir: Path, input_file: Path, checkpoint: str, out: Path | None) -> None:
    """Predict every row of INPUT (a CSV or Parquet file) with a run's network.

    \b
    INPUT needs the run's feature columns, found by name (others are ignored); the run's
    preprocessing and standardisation are applied as in training. The CSV has one row per
    input row, in order: `prediction` (the class name, or the value; one column per target
    for several targets), then for classification `prob_<class>` (softmax) per class.
      minidl predict runs/iris-20260101-120000 new_flowers.csv --out predictions.csv
    """
    from minidl_cli.predict import load, write_csv
    from minidl_cli.runs import atomic_write

    predictor = load(run_dir, checkpoint)
    text = write_csv(predictor.predict_columns(input_file))
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write(out, text.encode())
