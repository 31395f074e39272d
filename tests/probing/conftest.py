"""Shared fixtures for the probing tests: fake feature stores with planted structure."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from tests.fakes import fake_feature_dataset, write_fake_store


@pytest.fixture(scope="session")
def fake_ds() -> xr.Dataset:
    """In-memory store: speaker signal fades with depth, phone signal grows (4 layers)."""
    return fake_feature_dataset(seed=0)


@pytest.fixture(scope="session")
def null_ds() -> xr.Dataset:
    """In-memory pure-noise twin (structure=False)."""
    return fake_feature_dataset(seed=1, structure=False, model_id="random:fake-model")


@pytest.fixture(scope="session")
def store_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(store, null store) written to Zarr."""
    root = tmp_path_factory.mktemp("stores")
    a = write_fake_store(root / "model.zarr", seed=0)
    b = write_fake_store(root / "null.zarr", seed=1, structure=False, model_id="random:fake-model")
    return a, b
