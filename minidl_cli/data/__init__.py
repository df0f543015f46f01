"""Data sets: synthetic 2-D sets (disk, xor, moons, spirals), CSV files, images and text.

Importing this package registers every built-in data set with the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    "reusing_datasets",
    "split_validation",
]

_reuse: dict[str, Any] | None = None  # inside reusing_datasets(): {"key": ..., "dataset": ...}


@contextmanager
def reusing_datasets() -> Iterator[None]:
    """Inside this block make_dataset hands back the data set it built last when asked for
    the same type, options and seed again. Starting a run builds the data twice: once to
    check the config's shapes, once for the Trainer. A large CSV is then read only once.
    Data sets are never modified in place, so sharing one is safe.
    """
    global _reuse
    outer, _reuse = _reuse, {}
    try:
        yield
    finally:
        _reuse = outer


def make_dataset(type_name: str, options: dict[str, Any], seed: int) -> Dataset:
    """Build the registered data set `type_name`, drawing from a generator seeded with `seed`."""
    key = (type_name.lower(), repr(sorted(options.items())), seed)
    if _reuse is not None and _reuse.get("key") == key:
        return _reuse["dataset"]
    generator = torch.Generator().manual_seed(seed)
    dataset = registry.build("dataset", type_name, generator=generator, **options)
    if _reuse is not None:
        _reuse.update(key=key, dataset=dataset)  # the last one only: a seed group holds one
    return dataset
