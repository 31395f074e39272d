"""Helpers shared by the real-corpus adapters.

- durations from file headers only (``soundfile.info``; no audio is decoded), with the
  ``on_bad_audio`` policy (``error`` or ``skip``, skipped files are reported, never silently
  dropped);
- deterministic, speaker-disjoint split assignment by hashing (content splits) and a
  per-speaker utterance split (speaker identification);
- split/list-file parsing whose errors name the file, the line number and what was expected.

The hash is ``sha256(salt + "\\0" + key)``: it depends only on the key and the salt, never on
file-system order, Python's hash seed or the machine.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from deepwide.config import atomic_target
from deepwide.corpora.manifest import SPLITS
from deepwide.errors import AudioError, ConfigError, CorpusError

log = logging.getLogger(__name__)

#: Default content-split fractions (train, dev, test) for speaker-disjoint hashing.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

#: Valid values of the ``on_bad_audio`` adapter option.
BAD_AUDIO_POLICIES = ("error", "skip")


# -- hashing and split assignment -------------------------------------------------------------
def stable_unit(key: str, salt: str = "") -> float:
    """Map ``key`` to a number in [0, 1) that is identical on every machine and run.

    Args:
        key: e.g. a speaker or utterance id.
        salt: a namespace, so that different uses of the same key are independent.

    Returns:
        ``float`` in [0, 1), from the first 8 bytes of ``sha256(salt + "\\0" + key)``.
    """
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ConfigError(
            f"split fractions {tuple(fractions)} must be three non-negative numbers "
            "(train, dev, test) that sum to 1, e.g. (0.8, 0.1, 0.1)"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def split_counts(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """How many of ``n`` items go to train, dev and test.

    Largest-remainder rounding of ``n * fractions``; when ``n >= 3``, every split with a
    positive fraction gets at least one item (taken from the largest split), so a small corpus
    never ends up with an empty dev or test set.

    Returns:
        ``(n_train, n_dev, n_test)`` summing to ``n``.
    """
    fr = _check_fractions(fractions)
    raw = [n * f for f in fr]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            if fr[i] > 0 and counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def hashed_splits(keys: Iterable[str], fractions: Sequence[float], salt: str) -> dict[str, str]:
    """Assign each key to train/dev/test by rank of :func:`stable_unit` (``key``, ``salt``).

    The keys are ranked and cut into contiguous blocks of :func:`split_counts` sizes, so the
    split sizes are exact; the result depends only on the keys and the salt. The building
    block of :func:`speaker_disjoint_splits` (keys = speakers) and :func:`per_speaker_splits`
    (keys = one speaker's utterances), and usable on any keys, e.g. a seeded random dev carve
    of training utterances with fractions ``(0.8, 0.2, 0.0)``.

    Returns:
        ``{key: split}``.
    """
    uniq = sorted(set(keys))
    ranked = sorted(uniq, key=lambda k: (stable_unit(k, salt), k))
    n_tr, n_dev, _ = split_counts(len(ranked), fractions)
    out: dict[str, str] = {}
    for i, k in enumerate(ranked):
        out[k] = "train" if i < n_tr else "dev" if i < n_tr + n_dev else "test"
    return out


def subset_utterances(manifest: Any, kinds: Sequence[str] | None = None, max_per_split: int | None = None,
                      salt: str = "subset") -> Any:
    """A manifest restricted to utterances of ``kinds``, at most ``max_per_split`` per content split.

    The kept utterances of a split are those of lowest :func:`stable_unit` (``utt_id``,
    ``salt``), so the subset depends only on the ids: every model extracted with the same
    settings gets the same utterances. Trials are kept where both utterances are.

    Args:
        manifest: the corpus (:class:`~deepwide.corpora.manifest.Manifest`).
        kinds: keep utterances whose ``kind`` is one of these (None: all).
        max_per_split: cap per ``split`` value (None: no cap).

    Returns:
        The restricted manifest, utterances in the original order.

    Raises:
        CorpusError: nothing is left (the kinds named are not in the corpus).
    """
    keep = [u for u in manifest.utterances if kinds is None or u.kind in kinds]
    if not keep:
        found = sorted({u.kind for u in manifest.utterances})
        raise CorpusError(f"corpus {manifest.corpus_id} has no utterance of kind {', '.join(kinds or ())}; "
                          f"its kinds are: {', '.join(found)}")
    if max_per_split is not None:
        chosen: set[str] = set()
        for split in SPLITS:
            ids = sorted((u.utt_id for u in keep if u.split == split), key=lambda k: (stable_unit(k, salt), k))
            chosen.update(ids[:max_per_split])
        keep = [u for u in keep if u.utt_id in chosen]
    ids = {u.utt_id for u in keep}
    trials = [t for t in manifest.trials if t.utt_a in ids and t.utt_b in ids]
    return replace(manifest, utterances=keep, trials=trials)


def speaker_disjoint_splits(
    speakers: Iterable[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    salt: str = "content",
) -> dict[str, str]:
    """Assign each speaker to one content split (train/dev/test), deterministically.

    Speakers are ranked by :func:`stable_unit` (``speaker``, ``salt``) and cut into
    contiguous blocks of :func:`split_counts` sizes, so the split sizes are exact and no
    speaker appears in two splits. The ranking depends only on the speaker ids; adding or
    removing speakers can move others across a block boundary.

    Returns:
        ``{speaker: split}``.
    """
    return hashed_splits(speakers, fractions, salt)


def per_speaker_splits(
    utts_by_speaker: Mapping[str, Iterable[str]],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    salt: str = "sid",
) -> dict[str, str]:
    """Split each speaker's utterances into train/dev/test (for closed-set speaker ID).

    Within each speaker, utterances are ranked by :func:`stable_unit` (``utt_id``,
    ``salt``) and cut with :func:`split_counts`; every speaker with at least three utterances
    appears in all three splits, and a speaker with fewer keeps them all in train.

    Returns:
        ``{utt_id: sid_split}``.
    """
    out: dict[str, str] = {}
    for spk in sorted(utts_by_speaker):
        utts = list(utts_by_speaker[spk])
        if len(utts) < 3:
            out.update({u: "train" for u in utts})
        else:
            out.update(hashed_splits(utts, fractions, f"{salt}:{spk}"))
    return out


def group_by(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``[(group, member), …] -> {group: [member, …]}`` keeping member order."""
    out: dict[str, list[str]] = {}
    for g, m in items:
        out.setdefault(g, []).append(m)
    return out


# -- files, headers and the bad-audio policy ---------------------------------------------------
def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise a one-line :class:`CorpusError`."""
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected {what}")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a one-line :class:`CorpusError`."""
    if not path.is_file():
        raise CorpusError(f"missing {path}; expected {what}")
    return path


def check_policy(on_bad_audio: str) -> str:
    """Validate an ``on_bad_audio`` value (``error`` or ``skip``)."""
    if on_bad_audio not in BAD_AUDIO_POLICIES:
        raise ConfigError(
            f"on_bad_audio={on_bad_audio!r} is not valid; use one of {', '.join(BAD_AUDIO_POLICIES)}"
        )
    return on_bad_audio


@dataclass
class BadFiles:
    """Collects files an adapter could not use, under an ``on_bad_audio`` policy.

    With ``policy="error"`` the first bad file raises (:class:`AudioError` for audio,
    :class:`CorpusError` otherwise); with ``"skip"`` it is logged and recorded, and
    :meth:`as_meta` puts the list into the manifest's ``meta["skipped"]``.
    """

    policy: str = "error"
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_policy(self.policy)

    def report(self, path: Path | str, reason: str, *, audio: bool = True) -> None:
        """Record (or raise for) one bad file; ``reason`` completes "PATH: REASON"."""
        if self.policy == "error":
            cls = AudioError if audio else CorpusError
            raise cls(f"{path}: {reason}; fix or remove it, or pass on_bad_audio='skip'")
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append({"path": str(path), "reason": reason})

    def as_meta(self) -> dict[str, Any]:
        return {"skipped": list(self.skipped)} if self.skipped else {}


def _header(path: Path) -> tuple[float, int] | str:
    # (duration_s, sample_rate), or the reason the header cannot be used.
    if not path.is_file():
        return "file does not exist"
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types for corrupt files
        return f"cannot read the audio header ({str(exc).strip()})"
    if info.frames <= 0 or info.samplerate <= 0:
        return "audio is empty (0 samples)"
    return info.frames / info.samplerate, int(info.samplerate)


def audio_header(path: Path) -> tuple[float, int]:
    """Read only the header of an audio file (nothing is decoded).

    Returns:
        ``(duration_s, sample_rate)``.

    Raises:
        AudioError: the file is missing, unreadable or holds no samples (message names it).
    """
    got = _header(path)
    if isinstance(got, str):
        raise AudioError(f"{path}: {got}; fix or remove the file")
    return got


def header_or_report(path: Path, bad: BadFiles) -> tuple[float, int] | None:
    """:func:`audio_header`, or ``None`` after reporting the file to ``bad`` (skip policy).

    Raises:
        AudioError: under the ``error`` policy.
    """
    got = _header(path)
    if isinstance(got, str):
        bad.report(path, got)
        return None
    return got


def iter_progress(items: Sequence[Any], desc: str) -> Iterator[Any]:
    """Iterate with a tqdm bar on terminals (long corpora); plain iteration otherwise."""
    if len(items) < 2000:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, disable=None, leave=False)


def rel_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (manifest paths are portable)."""
    return path.relative_to(root).as_posix()


# -- text list files -------------------------------------------------------------------------
def read_text_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Read a text file as ``[(line_number, stripped_line), …]``, blank lines dropped.

    Raises:
        CorpusError: the file is missing or not UTF-8 (the message says what it should hold).
    """
    require_file(path, what)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path} is not UTF-8 text ({exc}); expected {what}") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def malformed(path: Path, lineno: int, expected: str, line: str) -> CorpusError:
    """The one-line error for a bad line: ``FILE:LINE: expected …, got '…'``."""
    shown = line if len(line) <= 80 else line[:77] + "..."
    return CorpusError(f"{path}:{lineno}: expected {expected}, got {shown!r}")


def parse_fields(
    path: Path,
    n_fields: int,
    expected: str,
    *,
    what: str,
    maxsplit: int | None = None,
) -> list[tuple[int, list[str]]]:
    """Parse a whitespace-separated list file with a fixed number of fields per line.

    Args:
        path: the file.
        n_fields: fields each line must have (with ``maxsplit``, the last one keeps the rest of
            the line, e.g. a transcript).
        expected: what a line looks like, for the error message (``"'<1|2|3> <path>.wav'"``).
        what: what the whole file is, for the missing-file message.
        maxsplit: passed to ``str.split`` (``n_fields - 1`` for "id + free text").

    Returns:
        ``[(line_number, fields), …]``.

    Raises:
        CorpusError: missing file, or a line with the wrong number of fields.
    """
    out = []
    for lineno, line in read_text_lines(path, what):
        parts = line.split(None, maxsplit) if maxsplit is not None else line.split()
        if len(parts) != n_fields:
            raise malformed(path, lineno, expected, line)
        out.append((lineno, parts))
    return out


def check_split(value: str, path: Path, lineno: int, expected: str, line: str) -> str:
    """Return ``value`` if it is one of :data:`SPLITS`, else a :func:`malformed` error."""
    if value not in SPLITS:
        raise malformed(path, lineno, expected, line)
    return value


# -- writing small derived audio (e.g. silence clips) ------------------------------------------
def atomic_write_wav(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write ``wav`` (S,) float32 in [-1, 1] as 16-bit PCM WAV via a temp file and a rename."""
    with atomic_target(path) as tmp:
        sf.write(tmp, np.asarray(wav, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
