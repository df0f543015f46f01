"""Configuration: load YAML, apply KEY=VALUE overrides, validate, resolve.

`load_config(path, overrides)` returns the *resolved* config: every section complete,
every default filled in, the seed drawn when absent, component names canonical and each
layer's `in_features` inferred, so the dict describes the run by itself and
`resolve(load_yaml(dump_yaml(c)))` gives `c` back. Every problem found is reported at
once, one line each, as `key.path: what is wrong (how to fix)`, in a `ConfigError`.

Component options are never listed here: they are read from the registry (constructor
signatures), so a plugin's layer is validated like a built-in one. No torch at import.

The parts, one module each:

    errors.py     ConfigError
    yaml_io.py    YAML 1.2 safe loading and dumping, error positions
    overrides.py  KEY=VALUE parsing and application
    hints.py      values against type hints: conversion, ranges, expectations in words
    validate.py   per-key checks of every section (did-you-mean included)
    resolver.py   resolve / load_config: sections, defaults, data and shape checks
"""

from minidl_cli.config.errors import ConfigError
from minidl_cli.config.overrides import apply_overrides
from minidl_cli.config.resolver import (
    REQUIRED,
    STANDARDIZE,
    TOP_LEVEL,
    TRAIN_OPTIONS,
    load_config,
    resolve,
)
from minidl_cli.config.validate import SEED_LIMIT
from minidl_cli.config.yaml_io import dump_yaml, load_yaml

__all__ = [
    "REQUIRED",
    "SEED_LIMIT",
    "STANDARDIZE",
    "TOP_LEVEL",
    "TRAIN_OPTIONS",
    "ConfigError",
    "apply_overrides",
    "dump_yaml",
    "load_config",
    "load_yaml",
    "resolve",
]
