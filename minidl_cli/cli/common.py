"""What every command shares: input types, and library errors turned into exit codes."""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path

import click

CONFIG_PATH = click.Path(path_type=Path, dir_okay=False)
RUN_PATH = click.Path(path_type=Path, file_okay=False)


class UserError(click.ClickException):
    """Bad input: printed as 'error: ...' lines, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        for line in self.message.splitlines():
            click.echo(f"error: {line}", err=True)


def handle_errors(command):
    """Turn the library's exceptions into exit codes and short messages (tracebacks: --debug)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from minidl_cli.config import ConfigError
        from minidl_cli.runs import RunError

        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except (click.ClickException, BrokenPipeError):  # click quiets a closed pipe (| head)
            raise
        except (ConfigError, RunError, ValueError, FileNotFoundError, ImportError) as e:
            if debug:
                traceback.print_exc()
            raise UserError(str(e) or type(e).__name__) from None
        except OSError as e:
            if debug:
                traceback.print_exc()
            raise UserError(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own): 130
            if debug:
                traceback.print_exc()
            click.echo("\ninterrupted", err=True)
            sys.exit(130)

    return wrapper


def check_overrides(overrides: list[str]) -> None:
    """UserError naming every override that is not KEY=VALUE."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError("\n".join(f"override {o!r}: expected KEY=VALUE, e.g. optimizer.lr=0.05"
                                  for o in bad))


def print_group_summary(rows: list[dict], task: str = "classification") -> None:
    """mean ± std, min and max of a seed group's final metrics (the task's), one line each."""
    from minidl_cli.seeds import statistics
    from minidl_cli.tasks import by_name, format_metric

    click.echo(f"{len(rows)} seeds        mean ± std            min       max")
    for key in by_name(task).group_keys:
        st = statistics([row[key] for row in rows])
        shown = {name: format_metric(key, value) for name, value in st.items()}
        click.echo(f"{key:<12} {shown['mean']:>8} ± {shown['std']:<8} "
                   f"{shown['min']:>9} {shown['max']:>9}")
