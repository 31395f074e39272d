"""Corpora: the manifest contract, the embedded synthetic corpus and real-corpus adapters.

A corpus argument anywhere in deepwide is a *spec*:

- ``synth`` — the embedded synthetic corpus in the user cache (generated on first use);
- ``NAME:PATH`` — a corpus on disk read by the adapter ``NAME`` (``librispeech``,
  ``voxceleb1``, ``speechcommands``, ``fluent``, ``timit``, ``iemocap`` (fold 1;
  ``iemocap-foldK`` for fold K), or ``synth:DIR`` for a generated copy elsewhere);
- a folder holding a ``manifest.jsonl``.

Adapters are registered in :data:`CORPORA` as ``adapter(path: Path, **options) -> Manifest``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from deepwide.corpora.manifest import SPLITS, Manifest, Trial, Utterance
from deepwide.errors import CorpusError
from deepwide.registry import Registry

Adapter = Callable[..., Manifest]

#: corpus adapters by name; modules below register themselves on import.
CORPORA: Registry[Adapter] = Registry("corpus")

_ADAPTER_MODULES = ("synth", "librispeech", "voxceleb1", "speechcommands", "fluent", "timit", "iemocap")


def _load_adapters() -> None:
    for name in _ADAPTER_MODULES:
        try:
            importlib.import_module(f"deepwide.corpora.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"deepwide.corpora.{name}":
                raise


def resolve_corpus(spec: str, **options: object) -> Manifest:
    """Turn a corpus spec (see module docstring) into a :class:`Manifest`.

    ``options`` (e.g. ``on_bad_audio="skip"``) are passed to a ``NAME:PATH`` adapter.

    Raises:
        CorpusError / UnknownNameError: unknown adapter, missing path, malformed layout.
    """
    _load_adapters()
    if ":" in spec and not Path(spec).exists():
        name, _, path = spec.partition(":")
        adapter = CORPORA.get(name)
        p = Path(path).expanduser()
        if not p.exists():
            raise CorpusError(f"corpus path {p} does not exist; give {name}:PATH to the folder on disk")
        return adapter(p, **options)
    p = Path(spec).expanduser()
    if p.is_dir() and (p / "manifest.jsonl").is_file():
        return Manifest.load(p)
    if spec in CORPORA:
        return CORPORA.get(spec)(None)
    if p.exists():
        raise CorpusError(f"{p} has no manifest.jsonl; pass NAME:PATH (e.g. librispeech:{p})")
    valid = ", ".join(CORPORA.names())
    raise CorpusError(f"unknown corpus {spec!r}; give synth, NAME:PATH (NAME one of {valid}) or a folder with manifest.jsonl")


__all__ = ["CORPORA", "SPLITS", "Manifest", "Trial", "Utterance", "resolve_corpus"]
