"""`minidl predict`: a run's checkpoint on new rows, as CSV."""

from __future__ import annotations

from pathlib import Path

import click

from minidl_cli.cli.common import OUT_FILE, RUN_PATH, handle_errors, refuse_out


@click.command()
@click.argument("run_dir", type=RUN_PATH)
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--checkpoint", default=None,
              help="last, best, an epoch number, or a checkpoint file [default: best for a "
                   "run trained with train.early_stopping, else last].")
@click.option("--out", type=OUT_FILE, help="Write the CSV here instead of to stdout.")
@handle_errors
def predict(run_dir: Path, input_file: Path, checkpoint: str | None, out: Path | None) -> None:
    """Predict every row of INPUT (a CSV or Parquet file; for an image run, an image, a
    folder of images or an .npz with an array x; for a text run, a text file of one context
    per line) with a run's network.

    \b
    INPUT needs the run's feature columns, found by name (others are ignored); the run's
    preprocessing and standardisation are applied as in training. The CSV has one row per
    input row, in order: `prediction` (the class name, or the value; one column per target
    for several targets), then for classification `prob_<class>` (softmax) per class.
      minidl predict runs/flowers-20260101-120000 configs/data/flowers-new.csv
    For images (resized and converted as the run's image_folder data says), a `file`
    column comes first; a folder is read recursively, in sorted order. For a language
    model, `prediction` is the most likely next character after each line (a blank line is
    the empty context; the line end is written \\n).
      minidl predict runs/names-mlp-20261207-120000 contexts.txt
    """
    from minidl_cli.data.files import readable_file
    from minidl_cli.predict import load, write_csv
    from minidl_cli.runs import atomic_write

    refuse_out(out, run_dir, (input_file, Path(checkpoint) if checkpoint else None))
    if out is not None and not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: the folder {out.parent} does not exist; "
                                "create it or write elsewhere")
    predictor = load(run_dir, checkpoint)
    with readable_file(input_file) as (input_file, shown):
        columns = _predict(predictor, input_file)
    if columns.get("file") and str(input_file) != shown:  # one image from stdin or a pipe
        columns["file"] = [shown if f == str(input_file) else f for f in columns["file"]]
    text = write_csv(columns)
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write(out, text.encode())


def _predict(predictor, input_file: Path) -> dict[str, list]:
    if len(predictor.input_shape) == 3:  # an image run
        files, x = predictor.read_images(input_file)
        columns = {**({"file": files} if files is not None else {}),
                   **predictor.predict_columns(x)}
    else:
        columns = predictor.predict_columns(input_file)
    return columns
