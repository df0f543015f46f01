"""The `minidl` command line: parse, call one library function, print.

torch is imported lazily inside commands so `minidl --help` and `--version` stay instant.
Errors a user can cause exit with code 2 and one line per problem; a failed run exits 1;
SIGINT / SIGTERM save the run and exit 130 / 143.
"""

from __future__ import annotations

import click

from minidl_cli import __version__
from minidl_cli.cli.evaluate import evaluate
from minidl_cli.cli.gradcheck import gradcheck
from minidl_cli.cli.listing import list_
from minidl_cli.cli.plot import plot
from minidl_cli.cli.train import train

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="minidl")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
def main(debug: bool) -> None:
    """minidl: train hand-written-backprop networks described in YAML, into run directories.

    \b
    Quick start:
      minidl train configs/disk.yaml          train the reference experiment
      minidl evaluate runs/disk-...           evaluate its last checkpoint
      minidl plot runs/disk-...               redraw its pictures
    """


for command in (train, evaluate, plot, gradcheck, list_):
    main.add_command(command)
