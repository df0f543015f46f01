"""Shared fixtures: float64 random tensors and the oracle's tolerance."""

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
