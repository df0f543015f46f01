"""The `minidl` command line: parse, call one library function, print.

torch is imported lazily inside commands so `minidl --help` and `--version` stay instant.
Errors a user can cause exit with code 2 and one line per problem; a failed run exits 1;
SIGINT / SIGTERM save the run and exit 130 / 143.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any, NoReturn

import click

from minidl_cli import __version__
from minidl_cli.cli.common import LOST_READER, pause_gc_for_imports
from minidl_cli.cli.compare import compare
from minidl_cli.cli.evaluate import evaluate
from minidl_cli.cli.gradcheck import gradcheck
from minidl_cli.cli.listing import list_
from minidl_cli.cli.plot import plot
from minidl_cli.cli.predict import predict
from minidl_cli.cli.sample import sample
from minidl_cli.cli.train import train

__all__ = ["main"]


class Command(click.Group):
    """The `minidl` group. As a process's entry point (no `args`: it reads sys.argv) it starts
    with the garbage collector paused for the imports (common.pause_gc_for_imports) and ends
    the process at once when the command returns, skipping the interpreter's teardown."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        if args is not None or not kwargs.get("standalone_mode", True):
            return super().main(args, *rest, **kwargs)  # called from Python: click as usual
        pause_gc_for_imports()
        _open_missing_streams()
        try:
            super().main(args, *rest, **kwargs)
        except SystemExit as e:
            exit_now(e.code)
        except OSError as e:  # the reader went away while click printed an error (2>&1 | head)
            if e.errno not in LOST_READER:
                raise
            error = self._error  # the error being printed keeps its own exit code
            exit_now(error.exit_code if error is not None else 1)
        exit_now(0)

    # Remember the error click is about to print: click 8.4 prints it while handling it (the
    # OSError's __context__), click 8.5 after, so neither the traceback nor the context is a
    # reliable way to find its exit code.
    _error: click.ClickException | None = None

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as e:
            self._error = e
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            self._error = e
            raise


def _open_missing_streams() -> None:
    """Started with stdout or stderr closed (`minidl train ... >&-`, `2>&-`, a daemon), Python
    sets sys.stdout / sys.stderr to None: what minidl would print there goes to os.devnull
    instead, so the run trains on and ends as it would with a reader that went away."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def exit_now(code: Any) -> NoReturn:
    """sys.exit(code), less the interpreter's teardown: freeing every module of torch and
    matplotlib one object at a time costs about 0.4 CPU s (more on a busy machine), a tenth
    of the reference run. The atexit handlers run and stdout/stderr are flushed first; every
    file minidl writes is closed (and fsynced) before a command returns. With other Python
    threads alive Python's own exit joins them instead."""
    if threading.active_count() > 1:
        sys.exit(code)
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does
        print(code, file=sys.stderr)
        code = 1
    # Python has no public call that runs the atexit handlers: a handler registered first
    # that calls os._exit would skip those registered before the command started.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with it closed and never reopened
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (minidl list | head) stays quiet
            pass
    os._exit(code or 0)


@click.group(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="minidl")
@click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")
def main(debug: bool) -> None:
    """minidl: train hand-written-backprop networks described in YAML, into run directories.

    \b
    Quick start:
      minidl train configs/disk.yaml          train the reference experiment
      minidl evaluate runs/disk-...           evaluate its last checkpoint
      minidl plot runs/disk-...               redraw its pictures
      minidl predict runs/disk-... new.csv    predict new rows (columns x1, x2)
      minidl sample runs/names-mlp-...        text from a language-model run
    """


for command in (train, evaluate, compare, predict, sample, plot, gradcheck, list_):
    main.add_command(command)
