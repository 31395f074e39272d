"""The default synthetic corpus in the user cache (generated once, under a lock) and the ``synth``
corpus adapter."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from deepwide.config import config_hash
from deepwide.corpora import CORPORA
from deepwide.corpora.manifest import Manifest
from deepwide.corpora.synth.config import SynthConfig
from deepwide.corpora.synth.generation import default_workers, generate_synth
from deepwide.errors import CorpusError
from deepwide.locks import file_lock
from deepwide.paths import cache_dir

log = logging.getLogger(__name__)


def default_corpus_dir(config: SynthConfig | None = None, seed: int = 0) -> Path:
    """Cache folder of the default corpus: ``cache_dir()/corpora/synth-<config hash>-seed<seed>``."""
    cfg = config or SynthConfig()
    return cache_dir() / "corpora" / f"synth-{config_hash(cfg)}-seed{seed}"


def ensure_synth_corpus(
    config: SynthConfig | None = None, *, seed: int = 0, workers: int | None = None
) -> Manifest:
    """The default corpus for ``(config, seed)`` in the cache, generated on first use.

    Two processes asking at once do not both generate: the second waits on a lock file and
    then loads what the first wrote.
    """
    cfg = config or SynthConfig()
    out = default_corpus_dir(cfg, seed)
    if (out / "manifest.jsonl").is_file():
        return Manifest.load(out)
    lock = out.parent / f".{out.name}.lock"
    with file_lock(lock, waiting_message=f"waiting for another process that is generating {lock.with_suffix('')}"):
        if (out / "manifest.jsonl").is_file():
            return Manifest.load(out)
        if out.exists():  # an empty or stray folder (e.g. a crashed, pre-rename copy)
            shutil.rmtree(out)
        n = workers or default_workers()
        log.info("generating the default synthetic corpus into %s (first use)", out)
        return generate_synth(cfg, out, seed=seed, workers=n)



@CORPORA.register("synth")
def synth_corpus(path: Path | None = None, *, seed: int = 0) -> Manifest:
    """The ``synth`` adapter: ``None`` → the default cached corpus, a path → a generated folder."""
    if path is None:
        return ensure_synth_corpus(seed=seed)
    p = Path(path)
    if not (p / "manifest.jsonl").is_file():
        raise CorpusError(f"{p} holds no synthetic corpus (no manifest.jsonl); run `deepwide corpus synth --out {p}`")
    return Manifest.load(p)
