"""The corpus manifest: one row per utterance, the contract between corpora and every stage.

A manifest is saved as ``manifest.jsonl`` — a header line (corpus id, phone set, label sets,
speaker-verification trials, metadata) followed by one JSON object per utterance — and hashed
canonically so that stores can record which manifest produced them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepwide.config import atomic_write_text
from deepwide.errors import CorpusError

#: Content-task splits (speaker-disjoint where the corpus allows it).
SPLITS = ("train", "dev", "test")

Segment = tuple[str, float, float]  # (label, start_s, end_s)


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus.

    Attributes:
        utt_id: unique id within the corpus.
        path: audio file, absolute or relative to the manifest's ``root``.
        speaker: speaker id.
        split: content-task split, one of :data:`SPLITS` (speaker-disjoint where possible).
        duration_s: duration in seconds (at the file's own rate).
        kind: what the utterance is: ``sentence``, ``keyword``, ``command`` (or a corpus's own).
        sid_split: split for speaker identification (utterances of the same speakers split per
            speaker), or ``None`` when the utterance is not in the speaker-ID set.
        text, keyword, intent, emotion: labels where the corpus has them.
        phones: phone segments ``(phone, start_s, end_s)`` on the manifest's phone set.
        words: word segments ``(word, start_s, end_s)``.
    """

    utt_id: str
    path: str
    speaker: str
    split: str
    duration_s: float
    kind: str = "sentence"
    sid_split: str | None = None
    text: str | None = None
    keyword: str | None = None
    intent: str | None = None
    emotion: str | None = None
    phones: tuple[Segment, ...] = ()
    words: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"utterance {self.utt_id}: split {self.split!r} not in {SPLITS}")
        if self.sid_split is not None and self.sid_split not in SPLITS:
            raise ValueError(f"utterance {self.utt_id}: sid_split {self.sid_split!r} not in {SPLITS}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phones"] = [list(s) for s in self.phones]
        d["words"] = [list(s) for s in self.words]
        return {k: v for k, v in d.items() if v is not None and v != [] }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Utterance:
        d = dict(d)
        d["phones"] = tuple((str(p), float(a), float(b)) for p, a, b in d.get("phones", ()))
        d["words"] = tuple((str(w), float(a), float(b)) for w, a, b in d.get("words", ()))
        return cls(**d)


@dataclass(frozen=True)
class Trial:
    """A speaker-verification trial: is ``utt_b`` spoken by the speaker of ``utt_a``?"""

    utt_a: str
    utt_b: str
    target: bool


#: Label fields an utterance may carry, in a fixed order.
LABEL_FIELDS = ("text", "keyword", "intent", "emotion")


@dataclass
class Manifest:
    """A corpus as a list of utterances plus corpus-level facts.

    Attributes:
        corpus_id: e.g. ``"synth"`` or ``"librispeech:/data/LibriSpeech/dev-clean"``.
        root: folder that relative utterance paths are resolved against.
        utterances: the rows, in a stable order.
        phone_set: the phone inventory (``phones`` labels are drawn from it; index = class id).
        trials: speaker-verification trials (may be empty).
        meta: free-form, JSON-able corpus facts (generator config, source files …).
    """

    corpus_id: str
    root: Path
    utterances: list[Utterance]
    phone_set: tuple[str, ...] = ()
    trials: list[Trial] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        counts = Counter(u.utt_id for u in self.utterances)
        dup = [k for k, n in counts.items() if n > 1]
        if dup:
            raise CorpusError(f"corpus {self.corpus_id}: duplicate utterance ids, e.g. {dup[:3]}")

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def audio_path(self, utt: Utterance) -> Path:
        """Absolute path of ``utt``'s audio."""
        p = Path(utt.path)
        return p if p.is_absolute() else self.root / p

    def by_id(self) -> dict[str, Utterance]:
        return {u.utt_id: u for u in self.utterances}

    def select(self, splits: Iterable[str] | None = None) -> Manifest:
        """A manifest restricted to utterances whose content ``split`` or ``sid_split`` is in ``splits``."""
        if splits is None:
            return self
        wanted = set(splits)
        keep = [u for u in self.utterances if u.split in wanted or (u.sid_split in wanted)]
        ids = {u.utt_id for u in keep}
        trials = [t for t in self.trials if t.utt_a in ids and t.utt_b in ids]
        return dataclasses.replace(self, utterances=keep, trials=trials)

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    def label_sets(self) -> dict[str, list[str]]:
        """Sorted distinct values of each label field present in the corpus."""
        out: dict[str, list[str]] = {}
        for name in ("keyword", "intent", "emotion"):
            vals = sorted({getattr(u, name) for u in self.utterances if getattr(u, name) is not None})
            if vals:
                out[name] = vals
        return out

    # -- persistence -------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {
            "corpus_id": self.corpus_id,
            "phone_set": list(self.phone_set),
            "trials": [[t.utt_a, t.utt_b, int(t.target)] for t in self.trials],
            "meta": self.meta,
            "format": "deepwide-manifest/1",
        }

    def to_jsonl(self) -> str:
        lines = [json.dumps(self.header(), sort_keys=True)]
        lines += [json.dumps(u.to_json(), sort_keys=True) for u in self.utterances]
        return "\n".join(lines) + "\n"

    def content_hash(self) -> str:
        """sha256 (hex, 16 chars) of the canonical JSONL form, ``root`` excluded."""
        return hashlib.sha256(self.to_jsonl().encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write ``manifest.jsonl`` atomically (to ``path`` or ``path/manifest.jsonl``)."""
        p = Path(path)
        if p.suffix != ".jsonl":
            p = p / "manifest.jsonl"
        atomic_write_text(p, self.to_jsonl())
        return p

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`save`; ``root`` is the file's folder."""
        p = Path(path)
        if p.is_dir():
            p = p / "manifest.jsonl"
        if not p.is_file():
            raise CorpusError(f"no manifest at {p}; generate the corpus first (deepwide corpus synth)")
        try:
            lines = p.read_text().splitlines()
            head = json.loads(lines[0])
            utts = [Utterance.from_json(json.loads(line)) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, IndexError, TypeError, ValueError) as exc:
            raise CorpusError(f"manifest {p} is malformed ({exc}); regenerate it") from exc
        trials = [Trial(a, b, bool(t)) for a, b, t in head.get("trials", [])]
        return cls(
            corpus_id=head["corpus_id"],
            root=p.parent,
            utterances=utts,
            phone_set=tuple(head.get("phone_set", ())),
            trials=trials,
            meta=head.get("meta", {}),
        )
