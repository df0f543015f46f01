"""`minidl list`: the registry, with every option, type and default."""

from __future__ import annotations

import click

from minidl_cli.cli.common import handle_errors


@click.command(name="list")
@click.argument("kind", required=False,
                type=click.Choice(["layer", "loss", "optimizer", "scheduler", "dataset"]))
@handle_errors
def list_(kind: str | None) -> None:
    """Every registered component with its options, types and defaults."""
    from minidl_cli import registry

    for k in [kind] if kind else registry.KINDS:
        click.echo(f"{k}s:")
        for entry in registry.entries(k):
            aliases = f" (also: {', '.join(entry.aliases)})" if entry.aliases else ""
            click.echo(f"  {entry.name}{aliases} - {entry.summary}")
            for option in entry.options():
                click.echo(f"      {option.describe()}")
        click.echo()
