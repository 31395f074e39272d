"""The corpus manifest: one row per utterance, the contract between corpora and every stage.

A manifest is saved as ``manifest.jsonl`` — a header line (corpus id, phone set, label sets,
speaker-verification trials, metadata) followed by one JSON object per utterance — and hashed
canonically so that stores can record which manifest produced them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
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
        folds: the utterance's split in each fold of a corpus's cross-validation protocol
            (IEMOCAP: five leave-one-session-out folds), each one of :data:`SPLITS`; empty
            when the corpus has no folds.
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
    folds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"utterance {self.utt_id}: split {self.split!r} not in {SPLITS}")
        if self.sid_split is not None and self.sid_split not in SPLITS:
            raise ValueError(f"utterance {self.utt_id}: sid_split {self.sid_split!r} not in {SPLITS}")
        bad = [f for f in self.folds if f not in SPLITS]
        if bad:
            raise ValueError(f"utterance {self.utt_id}: fold split {bad[0]!r} not in {SPLITS}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phones"] = [list(s) for s in self.phones]
        d["words"] = [list(s) for s in self.words]
        d["folds"] = list(self.folds)
        return {k: v for k, v in d.items() if v is not None and v != [] }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Utterance:
        d = dict(d)
        d["phones"] = tuple((str(p), float(a), float(b)) for p, a, b in d.get("phones", ()))
        d["words"] = tuple((str(w), float(a), float(b)) for w, a, b in d.get("words", ()))
        d["folds"] = tuple(str(f) for f in d.get("folds", ()))
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
        """Read a manifest written by :meth:`save`; ``root`` is the file's folder.

        Every field of every line is checked against the schema (:func:`check_header`,
        :func:`check_row`) before anything is built.

        Raises:
            CorpusError: no manifest, or a line that breaks the schema; one line naming the
                file, the line number, the field, what was expected and what was found.
        """
        p = Path(path)
        if p.is_dir():
            p = p / "manifest.jsonl"
        if not p.is_file():
            raise CorpusError(f"no manifest at {p}; generate the corpus first (deepwide corpus synth)")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(f"manifest {p} is not UTF-8 text ({exc}); regenerate it") from exc
        lines = text.splitlines()
        if not lines or not lines[0].strip():
            raise CorpusError(f"{p}:1: the header line is missing (the file is empty); regenerate the manifest")
        head = check_header(_parse_line(p, 1, lines[0]), f"{p}:1")
        utts: list[Utterance] = []
        first_line: dict[str, int] = {}
        for lineno, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            utt = Utterance.from_json(check_row(_parse_line(p, lineno, line), where))
            if utt.utt_id in first_line:
                raise CorpusError(
                    f"{where}: utt_id {utt.utt_id!r} repeats line {first_line[utt.utt_id]}; "
                    f"utterance ids must be unique: fix the line or regenerate the manifest"
                )
            first_line[utt.utt_id] = lineno
            if head["phone_set"]:
                _check_phones_in_set(utt, set(head["phone_set"]), where)
            utts.append(utt)
        trials = [Trial(a, b, bool(t)) for a, b, t in head["trials"]]
        for i, t in enumerate(trials):
            for uid in (t.utt_a, t.utt_b):
                if uid not in first_line:
                    raise CorpusError(
                        f"{p}:1: trials[{i}] names utterance {uid!r}, which has no line in the manifest; "
                        f"drop the trial or add the utterance (or regenerate the manifest)"
                    )
        return cls(
            corpus_id=head["corpus_id"],
            root=p.parent,
            utterances=utts,
            phone_set=tuple(head["phone_set"]),
            trials=trials,
            meta=head["meta"],
        )


# -- schema checks of a loaded manifest -------------------------------------------------------
#: The ``format`` value this version writes; ``deepwide-manifest/N`` with N > 1 is newer.
MANIFEST_FORMAT = "deepwide-manifest/1"

#: Field -> (expected type in words, whether ``null`` is allowed) of an utterance line.
ROW_FIELDS: dict[str, tuple[str, bool]] = {
    "utt_id": ("a non-empty string", False),
    "path": ("a non-empty string", False),
    "speaker": ("a non-empty string", False),
    "split": (f"one of {', '.join(SPLITS)}", False),
    "duration_s": ("a positive, finite number of seconds", False),
    "kind": ("a non-empty string", False),
    "sid_split": (f"one of {', '.join(SPLITS)}, or null", True),
    "text": ("a string or null", True),
    "keyword": ("a string or null", True),
    "intent": ("a string or null", True),
    "emotion": ("a string or null", True),
    "phones": ("a list of [phone, start_s, end_s]", False),
    "words": ("a list of [word, start_s, end_s]", False),
    "folds": (f"a list of splits ({', '.join(SPLITS)}), one per fold", False),
}
REQUIRED_ROW_FIELDS = ("utt_id", "path", "speaker", "split", "duration_s")

#: Phone segments may end this far past the utterance's duration (max of 0.1 s and 1 %).
SEGMENT_END_SLACK_S = 0.1


def _found(value: Any) -> str:
    """``value`` as shown in an error: its JSON text (shortened) and its JSON type."""
    kind = {
        bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    shown = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({kind})"


def _bad(where: str, field_name: str, expected: str, value: Any, hint: str = "") -> CorpusError:
    todo = hint or "fix that line or regenerate the manifest"
    return CorpusError(f"{where}: field {field_name!r} must be {expected}, got {_found(value)}; {todo}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_line(path: Path, lineno: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
            f"fix that line or regenerate the manifest"
        ) from exc


def check_header(head: Any, where: str) -> dict[str, Any]:
    """Validate the header line of a manifest and fill in its optional fields.

    Args:
        head: the parsed JSON of line 1.
        where: ``FILE:1`` for messages.

    Returns:
        ``{"corpus_id", "phone_set", "trials", "meta"}`` with defaults for missing optional ones.

    Raises:
        CorpusError: one line naming the field, the expected type and what was found.
    """
    if not isinstance(head, dict):
        raise CorpusError(
            f"{where}: the header must be a JSON object with corpus_id, phone_set, trials and meta, "
            f"got {_found(head)}; the first line of a manifest is its header: regenerate the manifest"
        )
    fmt = head.get("format", MANIFEST_FORMAT)
    if fmt != MANIFEST_FORMAT:
        m = re.fullmatch(r"deepwide-manifest/(\d+)", fmt) if isinstance(fmt, str) else None
        if m and int(m.group(1)) > 1:
            raise CorpusError(
                f"{where}: the manifest has format {fmt!r}, newer than this deepwide reads "
                f"({MANIFEST_FORMAT}); upgrade deepwide or regenerate the manifest with this version"
            )
        raise _bad(where, "format", repr(MANIFEST_FORMAT), fmt, "this is not a deepwide manifest: regenerate it")
    if "corpus_id" not in head:
        raise CorpusError(
            f"{where}: the header has no 'corpus_id' (a non-empty string naming the corpus); "
            f"add it or regenerate the manifest"
        )
    corpus_id = head["corpus_id"]
    if not isinstance(corpus_id, str) or not corpus_id:
        raise _bad(where, "corpus_id", "a non-empty string", corpus_id)
    phone_set = head.get("phone_set", [])
    if not isinstance(phone_set, list) or not all(isinstance(x, str) and x for x in phone_set):
        raise _bad(where, "phone_set", "a list of non-empty strings", phone_set)
    dup = sorted({x for x in phone_set if phone_set.count(x) > 1})
    if dup:
        raise _bad(where, "phone_set", "a list of distinct phones (index = class id)", dup,
                   "remove the repeated phones or regenerate the manifest")
    trials = head.get("trials", [])
    if not isinstance(trials, list):
        raise _bad(where, "trials", "a list of [utt_a, utt_b, 0 or 1]", trials)
    for i, t in enumerate(trials):
        ok = (
            isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) and x for x in t[:2])
            and (isinstance(t[2], bool) or t[2] in (0, 1)) and not isinstance(t[2], float)
        )
        if not ok:
            raise _bad(where, f"trials[{i}]", "[utt_a, utt_b, target] with two utterance ids and 0 or 1", t)
    meta = head.get("meta", {})
    if not isinstance(meta, dict):
        raise _bad(where, "meta", "a JSON object", meta)
    return {"corpus_id": corpus_id, "phone_set": phone_set, "trials": trials, "meta": meta}


def check_row(row: Any, where: str) -> dict[str, Any]:
    """Validate one utterance line of a manifest against :data:`ROW_FIELDS`.

    Checks the type of every field, that the splits are known, that the duration is positive
    and finite, and that segments are ``[label, start_s, end_s]`` with finite ``0 <= start <=
    end``, ending at most ``max(0.1 s, 1 %)`` after the duration; phone segments must also be
    in time order without overlapping.

    Args:
        row: the parsed JSON of the line.
        where: ``FILE:LINE`` for messages.

    Returns:
        ``row`` (unchanged) when it is valid.

    Raises:
        CorpusError: one line naming the line, the field, the expected type and what was found.
    """
    if not isinstance(row, dict):
        raise CorpusError(
            f"{where}: an utterance line must be a JSON object with {', '.join(REQUIRED_ROW_FIELDS)}, "
            f"got {_found(row)}; fix that line or regenerate the manifest"
        )
    unknown = sorted(set(row) - set(ROW_FIELDS))
    if unknown:
        raise CorpusError(
            f"{where}: unknown field {unknown[0]!r}; valid fields: {', '.join(ROW_FIELDS)}; "
            f"fix that line or regenerate the manifest"
        )
    for name in REQUIRED_ROW_FIELDS:
        if name not in row:
            raise CorpusError(
                f"{where}: field {name!r} ({ROW_FIELDS[name][0]}) is missing; "
                f"fix that line or regenerate the manifest"
            )
    for name, (expected, nullable) in ROW_FIELDS.items():
        if name not in row or name in ("duration_s", "phones", "words", "folds"):
            continue
        value = row[name]
        if value is None and nullable:
            continue
        if not isinstance(value, str):
            raise _bad(where, name, expected, value)
        if name in ("split", "sid_split") and value not in SPLITS:
            raise _bad(where, name, expected, value)
        if name in ("utt_id", "path", "speaker", "kind") and not value:
            raise _bad(where, name, expected, value)
    duration = row["duration_s"]
    if not _is_number(duration) or not math.isfinite(duration) or duration <= 0:
        raise _bad(where, "duration_s", ROW_FIELDS["duration_s"][0], duration)
    folds = row.get("folds", [])
    if not isinstance(folds, list) or not all(isinstance(f, str) and f in SPLITS for f in folds):
        raise _bad(where, "folds", ROW_FIELDS["folds"][0], folds)
    slack = max(SEGMENT_END_SLACK_S, 0.01 * duration)
    for name in ("phones", "words"):
        segs = row.get(name, [])
        if not isinstance(segs, list):
            raise _bad(where, name, ROW_FIELDS[name][0], segs)
        prev_end = 0.0
        for i, seg in enumerate(segs):
            label = f"{name}[{i}]"
            if not (isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], str)
                    and _is_number(seg[1]) and _is_number(seg[2])):
                raise _bad(where, label, f"[{name[:-1]}, start_s, end_s] (a string and two numbers)", seg)
            start, end = float(seg[1]), float(seg[2])
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
                raise _bad(where, label, "a segment with finite times 0 <= start_s <= end_s", seg)
            if end > duration + slack:
                raise _bad(where, label, f"a segment ending by the utterance's duration_s ({duration:g} s)", seg)
            if name == "phones" and start < prev_end - 1e-6:
                raise _bad(where, label, f"a segment starting at or after the previous one's end ({prev_end:g} s)",
                           seg, "phone segments must be in time order without overlaps: fix that line "
                                "or regenerate the manifest")
            prev_end = end
    return row


def _check_phones_in_set(utt: Utterance, phone_set: set[str], where: str) -> None:
    for i, (ph, _, _) in enumerate(utt.phones):
        if ph and ph not in phone_set:
            raise CorpusError(
                f"{where}: phones[{i}] has phone {ph!r}, which is not in the header's phone_set; "
                f"add it to phone_set or regenerate the manifest"
            )
