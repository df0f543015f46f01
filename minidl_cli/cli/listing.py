"""`minidl list`: the registry, with every option, type and default; and the config's own
options (train:, data:, top-level keys)."""

from __future__ import annotations

import click

from minidl_cli.cli.common import echo, handle_errors

PLURALS = {"layer": "layers", "loss": "losses", "optimizer": "optimizers",
           "scheduler": "schedulers", "dataset": "datasets"}
SECTIONS = ("train", "data", "config")  # not components: options of the config itself
CHOICES = [*PLURALS, *PLURALS.values(), *SECTIONS]


@click.command(name="list")
@click.argument("kind", required=False, metavar="[KIND]",
                type=click.Choice(CHOICES, case_sensitive=False))
@handle_errors
def list_(kind: str | None) -> None:
    """Every registered component with its options, types and defaults; the train: and data:
    options and the top-level keys of a config.

    KIND narrows it to one part: layers, losses, optimizers, schedulers, datasets (or the
    singular), train, data or config.
    """
    from minidl_cli import registry

    singular = {plural: name for name, plural in PLURALS.items()}
    kind = singular.get(kind.lower(), kind.lower()) if kind else None
    for k in [kind] if kind else [*registry.KINDS, *SECTIONS]:
        if k in SECTIONS:
            _section(k)
            continue
        echo(f"{PLURALS[k]}:")
        for entry in registry.entries(k):
            aliases = f" (also: {', '.join(entry.aliases)})" if entry.aliases else ""
            echo(f"  {entry.name}{aliases} - {entry.summary}")
            follows = getattr(entry.target, "epoch_options", ())
            for option in entry.options():
                note = " (null: train.epochs, and it follows train.epochs on --resume)"
                echo(f"      {option.describe()}{note if option.name in follows else ''}")
            for arg, axis in entry.inferred.items():
                echo(f"      {arg}: int (inferred: {_read_off(entry, arg, axis)})")
        echo()


def _read_off(entry, arg: str, axis: int | str) -> str:
    """Where the builder reads a layer's inferred size `arg` from, as `minidl list` says it;
    a value set in a config must equal it (or, for a declared minimum, be at least it)."""
    if isinstance(axis, str):  # a size of the data set
        where = f"the data's {axis.replace('_size', '').replace('_', ' ')} size"
    else:
        where = "the input's last axis" if axis == -1 else f"the input's axis {axis} (N is 0)"
    if arg in (getattr(entry.target, "inferred_minimum", None) or {}):
        return f"{where}; a value set may be larger"
    return f"{where}; a value set must equal it"


def _section(name: str) -> None:
    """The options of the config's train: section, of every data: section, or its top level."""
    from minidl_cli.config import STANDARDIZE, TRAIN_OPTIONS
    from minidl_cli.config.resolver import (
        EARLY_STOPPING_OPTIONS,
        OPTION_HELP,
        STANDARDIZE_TARGET,
        TOP_LEVEL,
    )

    if name == "config":
        echo("config (top-level keys; data, model, loss, optimizer, scheduler and train are "
             "the sections above):")
        for key in TOP_LEVEL:
            if key in OPTION_HELP:
                echo(f"      {key}: {OPTION_HELP[key]}")
    else:
        from minidl_cli import registry

        refusing = [entry.name for entry in registry.entries("dataset")
                    if getattr(entry.target, "refused_options", ())]
        but = f" but {', '.join(refusing)}" if refusing else ""
        title = {"train": "train (the train: section of a config):",
                 "data": f"data (every data set{but} takes these besides its own options):"}[name]
        echo(title)
        for option in TRAIN_OPTIONS if name == "train" else [STANDARDIZE, STANDARDIZE_TARGET]:
            hint = OPTION_HELP.get(f"{name}.{option.name}")
            echo(f"      {option.describe()}{' - ' + hint if hint else ''}")
        if name == "train":
            echo(f"      early_stopping: mapping | null (default None) - "
                 f"{OPTION_HELP['train.early_stopping']}:")
            for option in EARLY_STOPPING_OPTIONS:
                echo(f"          {option.describe()}")
    echo()
