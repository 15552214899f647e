"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """For tests on tiny tensors: extra OpenMP threads only add wake-ups and spinning, which on a loaded
    2-core machine made a training step 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
