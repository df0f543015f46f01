"""Shared fixtures: keep the global registry and plugin imports isolated between tests."""

import sys

import pytest
import torch

from minidl_cli import registry

# Tiny networks: one thread avoids contention on small shared machines (same results).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_registry():
    """Tests may register plugin components; undo that (and their imports) afterwards."""
    registry.load_builtins()
    modules = set(sys.modules)
    with registry.restored():
        yield
    for name in set(sys.modules) - modules:
        if "plugin" in name or name.startswith("minidl_test"):
            del sys.modules[name]
