"""`minidl gradcheck`: every module of a config's model against torch autograd."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from minidl_cli.cli.common import CONFIG_PATH, check_overrides, handle_errors


@click.command()
@click.argument("config_path", metavar="CONFIG", type=CONFIG_PATH)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@handle_errors
def gradcheck(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Check every module and the loss of CONFIG's model against torch autograd (float64),
    and its optimizer against torch.optim."""
    import torch

    from minidl_cli.build import build_optimizer
    from minidl_cli.config import load_config
    from minidl_cli.gradcheck import (
        NO_TWIN,
        TOLERANCE,
        TORCH_OPTIMIZERS,
        check_network,
        check_optimizer,
    )
    from minidl_cli.train import Trainer

    check_overrides(list(overrides))
    config = load_config(config_path, list(overrides))
    config["train"] = {**config["train"], "dtype": "float64", "device": "cpu"}
    trainer = Trainer(config)
    n = min(64, len(trainer.splits["train"].x))
    part = trainer.splits["train"]
    report = check_network(trainer.model, trainer.loss_fn, part.x[:n], part.targets[:n])
    click.echo(f"{'module':<28} {'max rel. error vs autograd':>27} {'vs central diff.':>17}")
    for r, numeric in report.rows:
        numeric_text = "-" if numeric is None else f"{numeric:.2e}"
        note = "" if r.reference != NO_TWIN else f"  ({NO_TWIN})"
        click.echo(f"{r.name:<28} {r.max_error:>27.2e} {numeric_text:>17}{note}")
    passed = report.passed()
    if type(trainer.optimizer) in TORCH_OPTIMIZERS:  # a plugin's optimizer has no reference
        steps = check_optimizer(lambda params: build_optimizer(config["optimizer"], params))
        click.echo(f"{steps.name + ' vs torch.optim':<40} {steps.max_error:>15.2e} {'-':>17}")
        passed = passed and steps.passed()
    if not passed:
        click.echo(f"gradcheck FAILED: some error exceeds {TOLERANCE:g} (autograd, torch.optim) "
                   "or 1e-5 (central differences)", err=True)
        sys.exit(1)
    click.echo(f"gradcheck passed: {len(report.rows)} checks within {TOLERANCE:g} "
               f"(torch {torch.__version__})")
