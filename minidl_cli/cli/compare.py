"""`minidl compare`: runs, seed groups and sweeps in one table, best first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from minidl_cli.cli.common import OUT_FOLDER, RUN_PATH, echo, handle_errors, refuse_out_folder


@click.command()
@click.argument("paths", nargs=-1, required=True, type=RUN_PATH)
@click.option("--metric", default=None,
              help="Sort by this final metric, best first [default: test_accuracy; test_loss "
                   "for regression and language models].")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--out", type=OUT_FOLDER, default=None,
              help="Also draw the metric against each varied key into this folder.")
@handle_errors
def compare(paths: tuple[Path, ...], metric: str | None, as_json: bool,
            out: Path | None) -> None:
    """Compare runs, seed groups and sweeps (a sweep expands into its points): the config
    keys that differ, each final metric as mean ± std over seeds, epochs and training time.

    \b
      minidl compare runs/disk-sweep-20261207-120000
      minidl compare runs/disk-2026* runs/disk-tuned-2026* --metric test_loss --out cmp/
    """
    from minidl_cli import compare as comparing

    refuse_out_folder(out)  # before any work: the table is not printed either
    entries = comparing.collect(list(paths))
    metric = metric or comparing.default_metric(entries[0].task)
    rows = comparing.table(entries, metric)
    keys = comparing.varied_keys(entries)
    if as_json:
        click.echo(json.dumps([{k: None if isinstance(v, float) and math.isnan(v) else v
                                for k, v in row.items()} for row in rows], indent=2))
    else:
        _print_table(rows, keys, metric)
    if out is not None and not keys:
        echo(f"--out {out}: no picture drawn, no config key differs between these runs (the "
             "pictures draw the metric against each key that differs)", err=True)
    elif out is not None:
        for path in comparing.draw(rows, keys, metric, out):
            echo(path, err=as_json)  # --json keeps stdout one JSON document
        missing = [r["run"] for r in rows if math.isnan(r[f"{metric}_mean"])]
        if missing:
            echo(f"not drawn, without a {metric}: {', '.join(missing)}", err=True)


MAX_KEY_COLUMNS = 6  # more varied keys (two different networks): --json lists them all


def _print_table(rows: list[dict], keys: list[str], metric: str) -> None:
    from minidl_cli.tasks import format_metric

    hidden = keys[MAX_KEY_COLUMNS:]
    keys = keys[:MAX_KEY_COLUMNS]

    names = [n[:-5] for n in rows[0] if n.endswith("_mean")]
    shown = [metric] + [n for n in names if n != metric and n not in ("epochs", "train_s")
                        and (n.startswith("test_") or n in ("val_loss", "train_loss"))
                        and not (n.endswith("_error") and n[:-6] + "_accuracy" in names)]

    def cell(row: dict, name: str) -> str:
        mean, std = row[f"{name}_mean"], row[f"{name}_std"]
        if math.isnan(mean):
            return "-"
        if row["seeds"] <= 1:
            return format_metric(name, mean)
        return f"{format_metric(name, mean)} ± {format_metric(name, std)}"

    marked = any(r["status"] != "completed" for r in rows)  # else the column says nothing
    header = ["run", *keys, "seeds", *shown, "epochs", "train s", *(["status"] if marked else [])]
    lines = [[r["run"], *(_value(r[k]) for k in keys), str(r["seeds"]),
              *(cell(r, n) for n in shown),
              "-" if math.isnan(r["epochs_mean"]) else f"{r['epochs_mean']:g}",
              "-" if math.isnan(r["train_s_mean"]) else f"{r['train_s_mean']:.3g}",
              *([r["status"]] if marked else [])]
             for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    for line in [header, *lines]:
        echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    if hidden:
        echo(f"({len(hidden)} more keys differ: {', '.join(hidden[:4])}"
             f"{', ...' if len(hidden) > 4 else ''}; --json lists every one)")


def _value(value) -> str:
    """A config value for the table: floats to 4 significant digits (a search's draws)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)
