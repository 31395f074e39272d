"""The default synthetic corpus in the user cache (generated once, under a lock) and the ``synth``
corpus adapter."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from deepwide.config import config_hash
from deepwide.corpora import CORPORA
from deepwide.corpora.manifest import Manifest
from deepwide.corpora.synth.config import SynthConfig
from deepwide.corpora.synth.generation import default_workers, generate_synth
from deepwide.errors import CorpusError
from deepwide.paths import cache_dir

log = logging.getLogger(__name__)


def default_corpus_dir(config: SynthConfig | None = None, seed: int = 0) -> Path:
    """Cache folder of the default corpus: ``cache_dir()/corpora/synth-<config hash>-seed<seed>``."""
    cfg = config or SynthConfig()
    return cache_dir() / "corpora" / f"synth-{config_hash(cfg)}-seed{seed}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is generating %s", path.with_suffix(""))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    with _file_lock(out.parent / f".{out.name}.lock"):
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
