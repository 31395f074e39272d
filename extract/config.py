"""Extraction settings: what a store holds (:class:`ExtractConfig`) and how a run goes.

:class:`ExtractConfig` fields decide the *content* of a store (layers, frames, dtype, splits,
batching, seed of the frame sample, bad-audio policy, source of phone sequences); a store made with one config is never
appended to with another. Runtime settings that cannot change values (device, workers, shard)
are arguments of :func:`deepwide.extract.extract_features`, not part of the config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deepwide.corpora.manifest import SPLITS
from deepwide.errors import ConfigError

DTYPES = ("float16", "float32")
BAD_AUDIO_POLICIES = ("error", "skip")
#: Where the ``phones`` of a corpus without phone segments come from: its transcripts through
#: CMUdict (+ espeak-ng) with stress, the same without stress, or nowhere (segments only).
PHONE_SOURCES = ("lexicon", "lexicon-nostress", "segments")


@dataclass(frozen=True)
class ExtractConfig:
    """What to extract into a feature store.

    Attributes:
        layers: layer indices to keep (0 = input to the first transformer layer, ``L`` = last
            output), or ``None`` for all ``L + 1``.
        frames: ``"all"`` (every valid frame), ``"sample:K"`` (K random frames per utterance,
            seeded by ``seed`` and the utterance id) or ``"none"`` (pooled features only).
        dtype: storage type of ``hidden`` (``pooled`` is always float32).
        splits: keep utterances whose ``split`` or ``sid_split`` is one of these; ``None`` = all.
        kinds: keep utterances whose ``kind`` is one of these (``sentence``, ``keyword`` …);
            ``None`` = all.
        max_utts: keep at most this many utterances per content ``split`` (the lowest salted
            hashes of their ids: :func:`deepwide.corpora.common.subset_utterances`), e.g. a
            ``pr`` store on part of a corpus; ``None`` = all.
        batch_seconds: padded audio seconds per batch (batch size × longest utterance). Batches
            are planned once per store, so a resumed or sharded run computes the same batches.
        seed: seed of the frame sample (only used with ``sample:K``).
        on_bad_audio: ``"error"`` stops at the first unreadable/empty/non-finite file;
            ``"skip"`` leaves such utterances out and records them in the store's ``skipped``.
        phones_from: the ``phones`` coordinate (``pr`` targets) of a corpus that has no phone
            segments: ``"lexicon"`` reads its transcripts through CMUdict (espeak-ng for
            unknown words) as ARPAbet with stress, as SUPERB PR does; ``"lexicon-nostress"``
            the same with the 39 plain phones; ``"segments"`` writes none. A corpus with phone
            segments always takes them (see :mod:`deepwide.corpora.lexicon`).
    """

    layers: tuple[int, ...] | None = None
    frames: str = "all"
    dtype: str = "float16"
    splits: tuple[str, ...] | None = None
    batch_seconds: float = 64.0
    seed: int = 0
    on_bad_audio: str = "error"
    phones_from: str = "lexicon"
    kinds: tuple[str, ...] | None = None
    max_utts: int | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            if len(self.layers) == 0:
                raise ValueError("layers must name at least one layer (or be None for all)")
            if any(int(x) < 0 for x in self.layers):
                raise ValueError(f"layer indices must be >= 0, got {list(self.layers)}")
            if len(set(self.layers)) != len(self.layers):
                raise ValueError(f"layer indices repeat: {list(self.layers)}")
        parse_frames(self.frames)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} not in {DTYPES}")
        if self.splits is not None:
            bad = [s for s in self.splits if s not in SPLITS]
            if bad or not self.splits:
                raise ValueError(f"splits {list(self.splits)} must be a non-empty subset of {SPLITS}")
        if not self.batch_seconds > 0:
            raise ValueError(f"batch_seconds must be > 0, got {self.batch_seconds}")
        if self.on_bad_audio not in BAD_AUDIO_POLICIES:
            raise ValueError(f"on_bad_audio {self.on_bad_audio!r} not in {BAD_AUDIO_POLICIES}")
        if self.phones_from not in PHONE_SOURCES:
            raise ValueError(f"phones_from {self.phones_from!r} not in {PHONE_SOURCES}")
        if self.kinds is not None and (not self.kinds or not all(self.kinds)):
            raise ValueError(f"kinds {list(self.kinds)} must name at least one utterance kind")
        if self.max_utts is not None and self.max_utts < 1:
            raise ValueError(f"max_utts must be ≥ 1, got {self.max_utts}")

    @property
    def frames_per_utt(self) -> int | None:
        """K for ``sample:K``; ``None`` for ``all``; 0 for ``none``."""
        return parse_frames(self.frames)

    def resolve_layers(self, num_layers: int) -> tuple[int, ...]:
        """The stored layer indices for a model with ``num_layers`` transformer layers.

        Raises:
            ConfigError: a requested layer is above ``num_layers``.
        """
        if self.layers is None:
            return tuple(range(num_layers + 1))
        too_big = [x for x in self.layers if x > num_layers]
        if too_big:
            raise ConfigError(
                f"layers {too_big} do not exist: the model has layers 0..{num_layers}; "
                f"pass --layers all or indices up to {num_layers}"
            )
        return tuple(sorted(int(x) for x in self.layers))

    def identity(self, num_layers: int) -> dict[str, Any]:
        """The JSON-able content key of a store made with this config (``extract_config`` attr).

        Only settings that change stored values are included; the seed only when frames are
        sampled; ``phones_from``, ``kinds`` and ``max_utts`` only when they are not the default,
        so stores made before they existed keep their identity (and resume).
        """
        identity: dict[str, Any] = {
            "layers": list(self.resolve_layers(num_layers)),
            "frames": self.frames,
            "dtype": self.dtype if self.frames != "none" else None,
            "splits": sorted(self.splits) if self.splits is not None else None,
            "batch_seconds": float(self.batch_seconds),
            "seed": int(self.seed) if self.frames.startswith("sample:") else None,
            "on_bad_audio": self.on_bad_audio,
        }
        if self.phones_from != ExtractConfig.phones_from:
            identity["phones_from"] = self.phones_from
        if self.kinds is not None:
            identity["kinds"] = sorted(self.kinds)
        if self.max_utts is not None:
            identity["max_utts"] = int(self.max_utts)
        return identity


def parse_frames(text: str) -> int | None:
    """Parse a ``--frames`` value: ``all`` -> None, ``none`` -> 0, ``sample:K`` -> K (K >= 1).

    Raises:
        ConfigError: anything else.
    """
    if text == "all":
        return None
    if text == "none":
        return 0
    m = re.fullmatch(r"sample:(\d+)", text)
    if m and int(m.group(1)) >= 1:
        return int(m.group(1))
    raise ConfigError(f"--frames {text!r} is not valid; use all, none or sample:K with K >= 1")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``--shard k/n`` (0 <= k < n) into ``(k, n)``; ``None`` stays None.

    Raises:
        ConfigError: malformed or out of range.
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--shard {text!r} is not valid; use k/n, e.g. 0/4 for the first of 4")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= k < n:
        raise ConfigError(f"--shard {text!r} is out of range; k must be in 0..n-1 (e.g. 0/4 … 3/4)")
    return k, n


def parse_splits(text: str | None) -> tuple[str, ...] | None:
    """Parse ``--splits train,dev,test``; ``None``/``all`` -> None (every utterance).

    Raises:
        ConfigError: an unknown split name.
    """
    if text is None or text.strip() in ("", "all"):
        return None
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in SPLITS]
    if bad or not parts:
        raise ConfigError(f"--splits {text!r}: unknown split(s) {bad}; valid splits: {', '.join(SPLITS)}")
    return parts
