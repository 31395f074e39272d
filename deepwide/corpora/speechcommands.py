"""Speech Commands (v1 or v2) adapter in SUPERB's 12-class keyword-spotting setup.

Layout read::

    PATH/yes/0a7c2a8d_nohash_0.wav     one folder per word (v1: 30 words, v2: 35)
    PATH/validation_list.txt           "yes/0a7c2a8d_nohash_0.wav" per line → dev
    PATH/testing_list.txt              same format → test; every other clip → train
    PATH/_background_noise_/*.wav      long noise recordings → "_silence_" clips

or SUPERB's separate test archive (``speech_commands_test_set_v0.01``: folders of the 10
keywords plus ``_unknown_`` and ``_silence_``, no lists), which is read as all ``test``.

Labels (``keyword``): the 10 keywords (yes no up down left right on off stop go), every other
word → ``_unknown_``, noise clips → ``_silence_``; ``text`` keeps the spoken word.
``speaker`` is the clip's hash prefix (before ``_nohash_``); the official lists assign
speakers by hash, so the splits are speaker-disjoint.

``_silence_`` clips are cut deterministically: each background-noise file's whole seconds
are divided in time order into train/dev/test regions of 80/10/10 % (so no noise audio is
shared between splits); each region is cut into 1-s windows every ``silence_hop_s`` seconds
from its start. The windows are written once as 16-bit WAV files to a cache folder (keyed by
the noise files' names and sizes and the hop) and listed with absolute paths; their
pseudo-speaker is ``noise-<file>-<split>``.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import soundfile as sf

from deepwide.config import config_hash
from deepwide.corpora import CORPORA
from deepwide.corpora.common import (
    BadFiles,
    atomic_write_wav,
    header_or_report,
    iter_progress,
    malformed,
    read_text_lines,
    rel_posix,
    split_counts,
)
from deepwide.corpora.manifest import SPLITS, Manifest, Utterance
from deepwide.errors import ConfigError, CorpusError
from deepwide.paths import cache_dir

log = logging.getLogger(__name__)

#: SUPERB's 10 keywords.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
#: The 12 classes of SUPERB's KS task, in SUPERB's order.
CLASSES = KEYWORDS + (UNKNOWN, SILENCE)
NOISE_DIR = "_background_noise_"
SILENCE_CLIP_S = 1.0

_LIST_EXPECTED = "'WORD/SPEAKER_nohash_N.wav'"
_LIST_RE = re.compile(r"^[^/\s]+/[^/\s]+\.wav$")


def keyword_label(word: str) -> str:
    """SUPERB's 12-class label of a word folder name (``_silence_`` stays itself)."""
    if word in KEYWORDS or word in (UNKNOWN, SILENCE):
        return word
    return UNKNOWN


def speaker_of(filename: str) -> str:
    """Speaker id of a clip: the part before ``_nohash_`` (the whole stem if absent)."""
    stem = Path(filename).stem
    return stem.split("_nohash_", 1)[0]


def _read_list(path: Path, split: str) -> dict[str, str]:
    what = f"Speech Commands' {path.name} ({_LIST_EXPECTED} per line)"
    out: dict[str, str] = {}
    for lineno, line in read_text_lines(path, what):
        if not _LIST_RE.match(line):
            raise malformed(path, lineno, _LIST_EXPECTED, line)
        out[line] = split
    return out


def silence_windows(duration_s: float, hop_s: float = 1.0) -> list[tuple[str, float]]:
    """The ``(split, start_s)`` of each 1-s silence window cut from one noise file.

    The file's whole seconds are split in time order 80/10/10 (train/dev/test, via
    :func:`deepwide.corpora.common.split_counts`); each region yields windows starting at its
    start and every ``hop_s`` seconds after, while the window ends inside the region.
    """
    n_sec = int(math.floor(duration_s + 1e-9))
    counts = split_counts(n_sec, (0.8, 0.1, 0.1))
    out: list[tuple[str, float]] = []
    start = 0
    for split, n in zip(SPLITS, counts, strict=True):
        end = start + n
        k = 0
        while start + k * hop_s + SILENCE_CLIP_S <= end + 1e-9:
            out.append((split, round(start + k * hop_s, 6)))
            k += 1
        start = end
    return out


def _silence_utterances(
    noise_dir: Path, out_dir: Path | None, hop_s: float, bad: BadFiles
) -> tuple[list[Utterance], Path | None]:
    files = sorted(p for p in noise_dir.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    usable = []
    for f in files:
        hdr = header_or_report(f, bad)
        if hdr is not None:
            usable.append((f, hdr))
    if not usable:
        return [], None
    if out_dir is None:
        key = config_hash(
            {"files": [[f.name, f.stat().st_size] for f, _ in usable], "hop_s": hop_s, "clip_s": SILENCE_CLIP_S}
        )
        out_dir = cache_dir() / "corpora" / "speechcommands-silence" / key
    utts: list[Utterance] = []
    for f, (dur, sr) in usable:
        windows = silence_windows(dur, hop_s)
        n = int(round(SILENCE_CLIP_S * sr))
        missing = []
        for _split, start in windows:
            clip = out_dir / f"{f.stem}_{int(round(start * 1000)):07d}.wav"
            if not (clip.is_file() and _frames(clip) == n):
                missing.append((clip, start))
        if missing:
            try:
                wav, sr_read = sf.read(str(f), dtype="float32", always_2d=True)
            except Exception as exc:  # libsndfile raises several types for corrupt files
                bad.report(f, f"cannot decode the noise recording ({exc})")
                continue
            mono = wav.mean(axis=1)
            for clip, start in missing:
                a = int(round(start * sr_read))
                atomic_write_wav(clip, mono[a : a + n], sr_read)
        for split, start in windows:
            ms = int(round(start * 1000))
            clip = out_dir / f"{f.stem}_{ms:07d}.wav"
            utts.append(
                Utterance(
                    utt_id=f"{SILENCE}/{f.stem}_{ms:07d}", path=str(clip.resolve()),
                    speaker=f"noise-{f.stem}-{split}", split=split, duration_s=SILENCE_CLIP_S,
                    kind="keyword", keyword=SILENCE,
                )
            )  # fmt: skip
    return utts, out_dir


def _frames(path: Path) -> int:
    try:
        return sf.info(str(path)).frames
    except Exception:  # a half-written or foreign file: rewrite it
        return -1


@CORPORA.register("speechcommands")
def speechcommands_corpus(
    path: Path,
    *,
    silence_dir: str | Path | None = None,
    silence_hop_s: float = 1.0,
    on_bad_audio: str = "error",
) -> Manifest:
    """Read Speech Commands into a 12-class keyword manifest (SUPERB's KS setup).

    Args:
        path: the dataset folder (word folders + lists), or SUPERB's test archive folder.
        silence_dir: where the ``_silence_`` clips are written (default: a cache folder
            keyed by the noise files).
        silence_hop_s: hop between silence windows in seconds (1.0: non-overlapping).
        on_bad_audio: ``"error"`` or ``"skip"`` (skipped files go to ``meta["skipped"]``).

    Returns:
        A :class:`Manifest` with ``keyword`` (12 classes) and ``text`` (the word).

    Raises:
        CorpusError: no word folders, a missing list file, a malformed list line (file and
            line named), or a listed clip that is not on disk.
    """
    if not silence_hop_s > 0:
        raise ConfigError(f"silence_hop_s={silence_hop_s} must be > 0 seconds")
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected Speech Commands word folders")
    bad = BadFiles(on_bad_audio)
    dirs = sorted(d for d in path.iterdir() if d.is_dir())
    words = [d for d in dirs if not d.name.startswith("_")]
    test_archive = (path / UNKNOWN).is_dir() or (path / SILENCE).is_dir()
    if test_archive and not (path / "testing_list.txt").exists():
        return _read_test_archive(path, dirs, bad)
    if not words:
        raise CorpusError(
            f"{path} has no word folders; expected Speech Commands (yes/, no/, … with "
            "validation_list.txt and testing_list.txt)"
        )
    listed = _read_list(path / "validation_list.txt", "dev")
    for k, v in _read_list(path / "testing_list.txt", "test").items():
        listed[k] = v  # a clip in both lists counts as test, as in the dataset's own loader
    clips = sorted((d.name, p) for d in words for p in d.iterdir() if p.suffix.lower() == ".wav")
    on_disk = {f"{w}/{p.name}" for w, p in clips}
    for key in sorted(set(listed) - on_disk):
        bad.report(path / key, "listed in validation_list.txt/testing_list.txt but not on disk", audio=False)

    utts: list[Utterance] = []
    for word, p in iter_progress(clips, "speechcommands headers"):
        hdr = header_or_report(p, bad)
        if hdr is None:
            continue
        key = f"{word}/{p.name}"
        utts.append(
            Utterance(
                utt_id=f"{word}/{p.stem}", path=rel_posix(p, path), speaker=speaker_of(p.name),
                split=listed.get(key, "train"), duration_s=hdr[0], kind="keyword",
                text=word, keyword=keyword_label(word),
            )
        )  # fmt: skip
    silence: list[Utterance] = []
    sil_dir: Path | None = None
    if (path / NOISE_DIR).is_dir():
        out = Path(silence_dir).expanduser() if silence_dir is not None else None
        silence, sil_dir = _silence_utterances(path / NOISE_DIR, out, silence_hop_s, bad)
    else:
        log.warning("speechcommands: no %s folder; the manifest has no _silence_ clips", NOISE_DIR)
    meta = {
        "adapter": "speechcommands",
        "layout": "lists",
        "version": "v2" if (path / "backward").is_dir() else "v1",
        "words": [d.name for d in words],
        "classes": list(CLASSES),
        "silence_dir": str(sil_dir) if sil_dir else None,
        "silence_hop_s": silence_hop_s,
        **bad.as_meta(),
    }
    return Manifest(
        corpus_id=f"speechcommands:{path.resolve()}", root=path, utterances=utts + silence, meta=meta
    )


def _read_test_archive(path: Path, dirs: list[Path], bad: BadFiles) -> Manifest:
    utts: list[Utterance] = []
    for d in dirs:
        if d.name == NOISE_DIR:
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() != ".wav":
                continue
            hdr = header_or_report(p, bad)
            if hdr is None:
                continue
            label = keyword_label(d.name)
            utts.append(
                Utterance(
                    utt_id=f"{d.name}/{p.stem}", path=rel_posix(p, path), speaker=speaker_of(p.name),
                    split="test", duration_s=hdr[0], kind="keyword",
                    text=d.name if label in KEYWORDS else None,
                    keyword=label,
                )
            )  # fmt: skip
    if not utts:
        raise CorpusError(f"{path}: no .wav clips in its class folders; expected SUPERB's KS test set")
    meta = {"adapter": "speechcommands", "layout": "superb-test-archive", "classes": list(CLASSES), **bad.as_meta()}
    return Manifest(corpus_id=f"speechcommands:{path.resolve()}", root=path, utterances=utts, meta=meta)
