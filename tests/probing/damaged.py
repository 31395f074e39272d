"""Fake stores chunked like real ones (one layer per chunk) and ways to damage them."""

from __future__ import annotations

import json
from pathlib import Path

import zarr

from tests.fakes import fake_feature_dataset


def write_chunked_store(path: str | Path, **kwargs: object) -> Path:
    """:func:`tests.fakes.fake_feature_dataset` written with one chunk per layer of each array."""
    ds = fake_feature_dataset(**kwargs)  # type: ignore[arg-type]
    encoding = {
        "hidden": {"chunks": (1, ds.sizes["frame"], ds.sizes["feat"])},
        "pooled": {"chunks": (1, ds.sizes["utt"], ds.sizes["feat"])},
    }
    ds.to_zarr(str(path), mode="w", consolidated=False, zarr_format=3, encoding=encoding)
    return Path(path)


def delete_chunk(path: Path, array: str, layer: int) -> None:
    """Delete the chunk file of ``array`` holding layer position ``layer`` (reads back as NaN)."""
    chunk = Path(path) / array / "c" / str(layer) / "0" / "0"
    assert chunk.is_file(), chunk
    chunk.unlink()


def set_attr(path: Path, key: str, value: object) -> None:
    """Overwrite one root attribute of a store (JSON-valued ones given as Python values)."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    group.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
