"""deepwide.extract: cache every layer of a speech model over a corpus in a feature store.

``extract_features(encoder, manifest, out, ExtractConfig(...))`` writes the Zarr store of
:mod:`deepwide.store` (resumable after a kill, shardable with ``shard=(k, n)``);
``run_extract(model_spec, corpus_spec, out, ...)`` resolves specs first (the CLI's call).
Read stores with :func:`deepwide.store.open_store`.
"""

from __future__ import annotations

from deepwide.extract.config import (
    ExtractConfig,
    parse_frames,
    parse_shard,
    parse_splits,
)
from deepwide.lazy import lazy_exports

_EXPORTS = {  # run.py imports torch: loaded on first use, so `deepwide --help` stays light
    "ExtractReport": "deepwide.extract.run",
    "extract_features": "deepwide.extract.run",
    "run_extract": "deepwide.extract.run",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ExtractConfig",
    "ExtractReport",
    "extract_features",
    "parse_frames",
    "parse_shard",
    "parse_splits",
    "run_extract",
]
