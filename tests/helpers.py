"""Tiny configs and a CLI runner shared by the end-to-end tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from minidl_cli.cli import main

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"type": "disk", "n_train": 200, "n_test": 100},
    "model": [{"type": "linear", "out_features": 8}, "relu",
              {"type": "linear", "out_features": 2}, "tanh"],
    "loss": {"type": "mse", "targets": "signed"},
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 50},
}


def write_config(tmp_path: Path, config: dict | None = None, name: str = "tiny.yaml",
                 **changes) -> Path:
    """Write TINY (or `config`) with top-level `changes` and runs_dir inside tmp_path."""
    config = {**(config or TINY), "runs_dir": str(tmp_path / "runs"), **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def train_tiny(tmp_path: Path, *overrides: str, config: dict | None = None) -> Path:
    """Train the tiny config quietly; the run directory from the last stdout line."""
    result = invoke("train", write_config(tmp_path, config), "--quiet", *overrides)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def run_of(result: Result) -> Path:
    """The run directory a successful `minidl train` printed as its last stdout line."""
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def metrics(run: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, as strings by column name."""
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))
