"""deepwide.extract: cache every layer of a speech model over a corpus in a feature store.

``extract_features(encoder, manifest, out, ExtractConfig(...))`` writes the Zarr store of
:mod:`deepwide.store` (resumable after a kill, shardable with ``shard=(k, n)``);
``run_extract(model_spec, corpus_spec, out, ...)`` resolves specs first (the CLI's call).
Read stores with :func:`deepwide.store.open_store`.
"""

from __future__ import annotations

from typing import Any

from deepwide.extract.config import (
    ExtractConfig,
    parse_frames,
    parse_shard,
    parse_splits,
)

__all__ = [
    "ExtractConfig",
    "ExtractReport",
    "extract_features",
    "parse_frames",
    "parse_shard",
    "parse_splits",
    "run_extract",
]


def __getattr__(name: str) -> Any:
    # run.py imports torch: load it only when used, so `deepwide --help` stays light.
    if name in ("ExtractReport", "extract_features", "run_extract"):
        from deepwide.extract import run

        return getattr(run, name)
    raise AttributeError(f"module 'deepwide.extract' has no attribute {name!r}")
