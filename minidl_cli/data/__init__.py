"""Data sets: synthetic 2-D sets (disk, xor, moons, spirals), CSV files, images and text.

Importing this package registers every built-in data set with the registry.
"""

from __future__ import annotations

from typing import Any

import torch

from minidl_cli import registry
from minidl_cli.data import csv, images, mnist1d, synthetic, text  # noqa: F401  (their decorators fill the registry)
from minidl_cli.data.base import (
    Dataset,
    apply_standardizer,
    check_network_data,
    fit_standardizer,
    split_validation,
)

__all__ = [
    "Dataset",
    "apply_standardizer",
    "check_network_data",
    "fit_standardizer",
    "make_dataset",
    "split_validation",
]

def make_dataset(type_name: str, options: dict[str, Any], seed: int) -> Dataset:
    """Build the registered data set `type_name`, drawing from a generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return registry.build("dataset", type_name, generator=generator, **options)
