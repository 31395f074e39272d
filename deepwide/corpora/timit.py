"""TIMIT adapter: NIST SPHERE audio, ``.PHN``/``.WRD``/``.TXT`` labels, 61→39 phone folding.

Layout read (upper or lower case, as LDC's CD or common copies have it)::

    PATH/TRAIN/DR1/FCJF0/SI1027.WAV   NIST SPHERE, 16 kHz, 16-bit (soundfile reads it; a
                                      RIFF copy named SI1027.WAV.wav is used if alone)
    PATH/TRAIN/DR1/FCJF0/SI1027.PHN   "start end phone", sample offsets at 16 kHz
    PATH/TRAIN/DR1/FCJF0/SI1027.WRD   "start end word"
    PATH/TRAIN/DR1/FCJF0/SI1027.TXT   "start end sentence text"
    PATH/TEST/DR1/MDAB0/…

Phones: the 61 TIMIT labels are folded to the 39 classes of Lee & Hon (1989), as in the
Kaldi ``timit`` recipe: ao→aa, ax/ax-h→ah, axr→er, hv→hh, ix→ih, el→l, em→m, en/nx→n,
eng→ng, zh→sh, ux→uw; closures (bcl dcl gcl pcl tcl kcl), pauses (pau, epi) and h# → sil;
the glottal stop q is deleted (its frames are left unlabelled). Segments keep TIMIT's
boundaries (no merging).

Splits (speaker-disjoint): TRAIN → train; the 24-speaker core test set → test; the standard
50-speaker development set (Kaldi ``conf/dev_spk.list``; both lists are written below) → dev.
The other 94 TEST speakers are left out (``test_set="core"``, the default) or join test
(``test_set="complete"``). A copy whose TEST folder holds none of the listed speakers falls
back to a deterministic speaker hash (TEST speakers half dev, half test). The SA sentences
(read by every speaker) are left out unless ``include_sa=True``. ``sid_split`` splits each
speaker's utterances 80/10/10 by hash.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepwide.audio import SAMPLE_RATE
from deepwide.corpora import CORPORA
from deepwide.corpora.common import (
    DEFAULT_FRACTIONS,
    BadFiles,
    group_by,
    header_or_report,
    malformed,
    per_speaker_splits,
    read_text_lines,
    rel_posix,
    speaker_disjoint_splits,
)
from deepwide.corpora.manifest import Manifest, Segment, Utterance
from deepwide.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

#: TIMIT's 61 phone labels (the .PHN alphabet).
TIMIT61: tuple[str, ...] = (
    "iy", "ih", "eh", "ey", "ae", "aa", "aw", "ay", "ah", "ao", "oy", "ow", "uh", "uw", "ux",
    "er", "ax", "ix", "axr", "ax-h", "jh", "ch", "b", "d", "g", "p", "t", "k", "dx", "s", "sh",
    "z", "zh", "f", "th", "v", "dh", "m", "n", "ng", "em", "nx", "en", "eng", "l", "r", "w",
    "y", "hh", "hv", "el", "bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "q", "pau", "epi", "h#",
)  # fmt: skip

#: Lee & Hon (1989) folding, 61 → 39; ``None`` deletes the segment (the glottal stop q).
FOLD_61_TO_39: dict[str, str | None] = {p: p for p in TIMIT61}
FOLD_61_TO_39.update({
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l",
    "em": "m", "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    "bcl": "sil", "dcl": "sil", "gcl": "sil", "pcl": "sil", "tcl": "sil", "kcl": "sil",
    "pau": "sil", "epi": "sil", "h#": "sil", "q": None,
})  # fmt: skip

#: The 39 folded classes in Lee & Hon's table order, ``sil`` last; index = class id. The
#: synthetic corpus (:mod:`deepwide.corpora.phones`) uses the same tuple, so phone probes
#: share their classes across TIMIT and synth.
TIMIT39: tuple[str, ...] = (
    "iy", "ih", "eh", "ae", "ah", "uw", "uh", "aa", "ey", "ay", "oy", "aw", "ow", "er",
    "l", "r", "w", "y", "m", "n", "ng",
    "ch", "jh", "dh", "b", "d", "dx", "g", "p", "t", "k", "z", "v", "f", "th", "s", "sh", "hh",
    "sil",
)  # fmt: skip

#: The TIMIT core test set: 24 speakers, two men and one woman per dialect region.
CORE_TEST_SPEAKERS = frozenset("""
mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0
mbpm0 mklt0 fnlp0 mcmj0 mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0
""".split())

#: The standard 50-speaker development set drawn from TEST (Kaldi's conf/dev_spk.list).
DEV_SPEAKERS = frozenset("""
faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 fdms0
fedw0 mgjf0 mglb0 mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0
mdvc0 mers0 fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 fgjd0 fjmg0 mroa0
mteb0 mjfc0 mrjr0 fmml0 mrws1
""".split())

TEST_SETS = ("core", "complete")

_SEG_EXPECTED = "'<start sample> <end sample> <label>'"


def fold_phone(label: str) -> str | None:
    """Fold one TIMIT-61 label to the 39-class set (``None`` for the deleted ``q``).

    Raises:
        KeyError: ``label`` is not one of :data:`TIMIT61`.
    """
    return FOLD_61_TO_39[label.lower()]


def _read_segments(path: Path, sample_rate: int, what: str) -> list[tuple[int, str, float, float]]:
    out = []
    for lineno, line in read_text_lines(path, what):
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise malformed(path, lineno, _SEG_EXPECTED, line)
        a, b = int(parts[0]), int(parts[1])
        if b < a:
            raise malformed(path, lineno, f"{_SEG_EXPECTED} with end >= start", line)
        out.append((lineno, parts[2], a / sample_rate, b / sample_rate))
    return out


def read_phn(path: Path, sample_rate: int = SAMPLE_RATE) -> tuple[Segment, ...]:
    """Read a ``.PHN`` file and fold it to :data:`TIMIT39`.

    Returns:
        ``((phone, start_s, end_s), …)``; ``q`` and zero-length segments are dropped.

    Raises:
        CorpusError: a malformed line or a label outside TIMIT's 61 (file and line named).
    """
    segs: list[Segment] = []
    for lineno, label, a, b in _read_segments(path, sample_rate, "a TIMIT .PHN phone file"):
        if label.lower() not in FOLD_61_TO_39:
            raise malformed(path, lineno, "one of TIMIT's 61 phone labels", label)
        ph = FOLD_61_TO_39[label.lower()]
        if ph is not None and b > a:
            segs.append((ph, a, b))
    return tuple(segs)


def read_wrd(path: Path, sample_rate: int = SAMPLE_RATE) -> tuple[Segment, ...]:
    """Read a ``.WRD`` file: ``((word, start_s, end_s), …)``."""
    return tuple((w, a, b) for _, w, a, b in _read_segments(path, sample_rate, "a TIMIT .WRD word file"))


def _read_txt(path: Path) -> str:
    lines = read_text_lines(path, "a TIMIT .TXT sentence file")
    if not lines:
        raise CorpusError(f"{path} is empty; expected '<start> <end> sentence text'")
    lineno, line = lines[0]
    parts = line.split(None, 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise malformed(path, lineno, "'<start sample> <end sample> sentence text'", line)
    return parts[2]


def _child(folder: Path, name: str) -> Path | None:
    for c in folder.iterdir():
        if c.is_dir() and c.name.lower() == name:
            return c
    return None


def _speaker_files(spk_dir: Path) -> dict[str, dict[str, Path]]:
    # {sentence id (lower): {"wav"|"phn"|"wrd"|"txt": path}}; prefer SI1027.WAV over SI1027.WAV.wav
    out: dict[str, dict[str, Path]] = {}
    for p in sorted(spk_dir.iterdir(), key=lambda p: (p.name.count("."), p.name)):
        parts = p.name.lower().split(".")
        if len(parts) < 2 or not p.is_file():
            continue
        kind = parts[1]
        if kind in ("wav", "phn", "wrd", "txt"):
            out.setdefault(parts[0], {}).setdefault(kind, p)
    return out


@CORPORA.register("timit")
def timit_corpus(
    path: Path,
    *,
    test_set: str = "core",
    include_sa: bool = False,
    on_bad_audio: str = "error",
) -> Manifest:
    """Read TIMIT into a manifest with folded phone segments.

    Args:
        path: the folder holding ``TRAIN/`` and ``TEST/`` (any letter case).
        test_set: ``"core"`` (24 speakers; the other non-dev TEST speakers are left out) or
            ``"complete"`` (every TEST speaker not in the dev list).
        include_sa: keep the two SA sentences every speaker reads.
        on_bad_audio: ``"error"`` or ``"skip"`` (skipped files go to ``meta["skipped"]``).

    Returns:
        A :class:`Manifest` with ``text``, ``phones`` on :data:`TIMIT39`, ``words``.

    Raises:
        CorpusError: no TRAIN/TEST folders, a missing or malformed ``.PHN`` (file and line).
    """
    if test_set not in TEST_SETS:
        raise ConfigError(f"test_set={test_set!r} is not valid; use one of {', '.join(TEST_SETS)}")
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected TIMIT with TRAIN/ and TEST/")
    parts = {name: _child(path, name) for name in ("train", "test")}
    if all(v is None for v in parts.values()):
        raise CorpusError(
            f"{path} has no TRAIN/ or TEST/ folder; expected TIMIT's layout TRAIN/DR1/FCJF0/SI1027.WAV"
        )
    bad = BadFiles(on_bad_audio)
    rows: list[dict] = []
    for part, pdir in parts.items():
        if pdir is None:
            continue
        for dr in sorted(d for d in pdir.iterdir() if d.is_dir() and d.name.lower().startswith("dr")):
            for spk_dir in sorted(d for d in dr.iterdir() if d.is_dir()):
                spk = spk_dir.name.lower()
                for sent, files in sorted(_speaker_files(spk_dir).items()):
                    if sent.startswith("sa") and not include_sa:
                        continue
                    if "wav" not in files:
                        bad.report(spk_dir / f"{sent.upper()}.WAV", "audio missing (labels exist)")
                        continue
                    if "phn" not in files:
                        bad.report(files["wav"], "no .PHN phone file beside it", audio=False)
                        continue
                    hdr = header_or_report(files["wav"], bad)
                    if hdr is None:
                        continue
                    dur, sr = hdr
                    rows.append(dict(
                        utt_id=f"{spk}_{sent}", path=rel_posix(files["wav"], path), speaker=spk,
                        part=part, dialect=dr.name.lower(), duration_s=dur,
                        phones=read_phn(files["phn"], sr),
                        words=read_wrd(files["wrd"], sr) if "wrd" in files else (),
                        text=_read_txt(files["txt"]) if "txt" in files else None,
                    ))  # fmt: skip
    if not rows:
        raise CorpusError(f"{path}: no usable utterances; expected TRAIN|TEST/DRn/SPEAKER/*.WAV with .PHN")

    test_spk = sorted({r["speaker"] for r in rows if r["part"] == "test"})
    listed = [s for s in test_spk if s in CORE_TEST_SPEAKERS or s in DEV_SPEAKERS]
    spk_split: dict[str, str] = {}
    if test_spk and not listed:
        log.warning("timit: no TEST speaker is in the standard core-test/dev lists; hashing speakers")
        spk_split = speaker_disjoint_splits(test_spk, (0.0, 0.5, 0.5), salt="timit")
        policy = "speaker-hash"
    else:
        for s in test_spk:
            if s in CORE_TEST_SPEAKERS:
                spk_split[s] = "test"
            elif s in DEV_SPEAKERS:
                spk_split[s] = "dev"
            elif test_set == "complete":
                spk_split[s] = "test"
        policy = f"standard-{test_set}"
    for r in rows:
        if r["part"] == "train":
            spk_split[r["speaker"]] = "train"
    excluded = sorted(s for s in test_spk if s not in spk_split)
    rows = [r for r in rows if r["speaker"] in spk_split]
    if excluded:
        log.info("timit: %d TEST speakers outside the core test and dev sets left out", len(excluded))
    sid = per_speaker_splits(group_by((r["speaker"], r["utt_id"]) for r in rows), DEFAULT_FRACTIONS)
    utts = [
        Utterance(
            utt_id=r["utt_id"], path=r["path"], speaker=r["speaker"], split=spk_split[r["speaker"]],
            duration_s=r["duration_s"], kind="sentence", sid_split=sid[r["utt_id"]], text=r["text"],
            phones=r["phones"], words=r["words"],
        )
        for r in rows
    ]  # fmt: skip
    meta = {
        "adapter": "timit",
        "split_policy": policy,
        "include_sa": include_sa,
        "excluded_speakers": excluded,
        "phone_set_doc": "Lee & Hon 39 (61->39 folding; closures, pauses, h# -> sil; q deleted)",
        **bad.as_meta(),
    }
    return Manifest(
        corpus_id=f"timit:{path.resolve()}", root=path, utterances=utts, phone_set=TIMIT39, meta=meta
    )
