"""One torch thread for a test: numbers computed in-process compare bit for bit with a
subprocess runner's (which also runs one thread)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread; the previous count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test of a module (or conftest) that imports this fixture runs one torch thread."""
    with single_torch_thread():
        yield
