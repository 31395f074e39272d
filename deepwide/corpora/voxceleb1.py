"""VoxCeleb1 adapter: identification split and verification trials.

Layout read::

    PATH/wav/id10001/1zcIwhmdeo4/00001.wav     (or PATH/vox1_dev_wav/wav + PATH/vox1_test_wav/wav,
                                               or PATH itself holding the id* folders)
    PATH/iden_split.txt                        "<1|2|3> id10001/1zcIwhmdeo4/00001.wav"
    PATH/veri_test2.txt (or veri_test.txt)     "<0|1> idA/VIDEO/N.wav idB/VIDEO/N.wav"

(the list files may also sit in ``PATH/meta/``).

Manifest: ``utt_id`` is the file's path below ``wav/`` without ``.wav``
(``id10001/1zcIwhmdeo4/00001``), as the official lists name it; ``speaker`` the id folder.
``sid_split`` comes from ``iden_split.txt`` (1 → train, 2 → dev, 3 → test). The content
``split`` is speaker-disjoint: speakers that occur in the trial list (VoxCeleb1-O's 40 test
speakers) are ``test``; the others are hashed 90/10 into train/dev (80/10/10 when there is
no trial list). ``trials`` are the verification pairs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from deepwide.corpora import CORPORA
from deepwide.corpora.common import (
    DEFAULT_FRACTIONS,
    BadFiles,
    group_by,
    header_or_report,
    iter_progress,
    malformed,
    parse_fields,
    per_speaker_splits,
    rel_posix,
    speaker_disjoint_splits,
)
from deepwide.corpora.manifest import Manifest, Trial, Utterance
from deepwide.errors import CorpusError

log = logging.getLogger(__name__)

IDEN_SPLITS = {"1": "train", "2": "dev", "3": "test"}
#: Trial lists tried in order by ``trials="auto"`` (the cleaned VoxCeleb1-O list first).
TRIAL_FILES = ("veri_test2.txt", "veri_test.txt")

_KEY_RE = re.compile(r"^id\d+/[^/\s]+/[^/\s]+\.wav$")
_IDEN_EXPECTED = "'<1|2|3> idXXXXX/VIDEO/NNNNN.wav'"
_TRIAL_EXPECTED = "'<0|1> idXXXXX/VIDEO/NNNNN.wav idYYYYY/VIDEO/NNNNN.wav'"


def _wav_roots(path: Path) -> list[Path]:
    cands = [path / "wav", path / "vox1_dev_wav" / "wav", path / "vox1_test_wav" / "wav"]
    roots = [c for c in cands if c.is_dir()]
    if not roots and any(c.is_dir() and c.name.startswith("id") for c in path.iterdir()):
        roots = [path]
    if not roots:
        raise CorpusError(
            f"{path} has no wav/ folder; expected VoxCeleb1 as wav/idXXXXX/VIDEO/NNNNN.wav "
            "with iden_split.txt and veri_test*.txt beside it"
        )
    return roots


def _find_list(path: Path, name: str) -> Path | None:
    for c in (path / name, path / "meta" / name):
        if c.is_file():
            return c
    return None


def _list_file(path: Path, option: str | Path | None, auto: Sequence[str], what: str) -> Path | None:
    if option is None:
        return None
    if option == "auto":
        for name in auto:
            found = _find_list(path, name)
            if found is not None:
                return found
        return None
    p = Path(option)
    if not p.is_absolute():
        p = _find_list(path, str(option)) or path / p
    if not p.is_file():
        raise CorpusError(f"missing {p}; expected {what}")
    return p


def _key(path: Path, lineno: int, token: str, expected: str, line: str) -> str:
    if not _KEY_RE.match(token):
        raise malformed(path, lineno, expected, line)
    return token[: -len(".wav")]


@CORPORA.register("voxceleb1")
def voxceleb1_corpus(
    path: Path,
    *,
    iden_split: str | Path | None = "auto",
    trials: str | Path | None = "auto",
    on_bad_audio: str = "error",
) -> Manifest:
    """Read VoxCeleb1 into a manifest with ``sid_split`` and verification ``trials``.

    Args:
        path: the VoxCeleb1 folder (see the module docstring for the layouts accepted).
        iden_split: the identification split file (name below ``path``/``path/meta`` or a
            path); ``"auto"`` uses ``iden_split.txt`` if present, otherwise each speaker's
            utterances are hashed 80/10/10; ``None`` leaves ``sid_split`` unset.
        trials: the trial list; ``"auto"`` takes the first of :data:`TRIAL_FILES` present;
            ``None``: no trials.
        on_bad_audio: ``"error"`` or ``"skip"`` (skipped files go to ``meta["skipped"]``).

    Returns:
        A :class:`Manifest`. Files named in a list but absent on disk (a partial copy) are
        counted in ``meta["listed_missing"]``; trials that need them are dropped and counted.

    Raises:
        CorpusError: no ``wav/`` folder, no split file at all, a named list file missing, a
            malformed list line (file and line named), or lists that match no file on disk.
    """
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected VoxCeleb1 with wav/ and iden_split.txt")
    bad = BadFiles(on_bad_audio)
    roots = _wav_roots(path)
    iden_file = _list_file(path, iden_split, ("iden_split.txt",), f"VoxCeleb1's identification split ({_IDEN_EXPECTED} per line)")
    trial_file = _list_file(path, trials, TRIAL_FILES, f"a VoxCeleb1 trial list ({_TRIAL_EXPECTED} per line)")
    if iden_file is None and trial_file is None and iden_split == "auto" and trials == "auto":
        raise CorpusError(
            f"missing {path / 'iden_split.txt'} and {path / 'veri_test2.txt'}; expected at least one "
            "VoxCeleb1 split file (or pass iden_split=None, trials=None)"
        )

    # audio on disk: key "idXXXXX/VIDEO/NNNNN" -> file
    on_disk: dict[str, Path] = {}
    for r in roots:
        for spk_dir in sorted(d for d in r.iterdir() if d.is_dir() and d.name.startswith("id")):
            for wav in sorted(spk_dir.glob("*/*.wav")):
                on_disk.setdefault(rel_posix(wav, r)[: -len(".wav")], wav)
    if not on_disk:
        raise CorpusError(f"no idXXXXX/VIDEO/NNNNN.wav files below {', '.join(map(str, roots))}")

    sid: dict[str, str] = {}
    listed_missing: list[str] = []
    if iden_file is not None:
        for lineno, (code, rel) in parse_fields(iden_file, 2, _IDEN_EXPECTED, what="iden_split.txt"):
            if code not in IDEN_SPLITS:
                raise malformed(iden_file, lineno, _IDEN_EXPECTED, f"{code} {rel}")
            key = _key(iden_file, lineno, rel, _IDEN_EXPECTED, f"{code} {rel}")
            if key in on_disk:
                sid[key] = IDEN_SPLITS[code]
            else:
                listed_missing.append(key)
        if not sid:
            raise CorpusError(
                f"none of the files listed in {iden_file} exist below {roots[0]}; "
                "expected wav/idXXXXX/VIDEO/NNNNN.wav as the list names them"
            )

    pairs: list[tuple[str, str, bool]] = []
    if trial_file is not None:
        for lineno, (lab, a, b) in parse_fields(trial_file, 3, _TRIAL_EXPECTED, what="a trial list"):
            line = f"{lab} {a} {b}"
            if lab not in ("0", "1"):
                raise malformed(trial_file, lineno, _TRIAL_EXPECTED, line)
            pairs.append((_key(trial_file, lineno, a, _TRIAL_EXPECTED, line),
                          _key(trial_file, lineno, b, _TRIAL_EXPECTED, line), lab == "1"))  # fmt: skip

    keys = sorted(on_disk)
    durations: dict[str, float] = {}
    for key in iter_progress(keys, "voxceleb1 headers"):
        hdr = header_or_report(on_disk[key], bad)
        if hdr is not None:
            durations[key] = hdr[0]
    keys = [k for k in keys if k in durations]
    speaker = {k: k.split("/", 1)[0] for k in keys}

    trial_list: list[Trial] = []
    dropped = 0
    for a, b, target in pairs:
        if a in durations and b in durations:
            trial_list.append(Trial(a, b, target))
        else:
            dropped += 1
    if pairs and not trial_list:
        raise CorpusError(
            f"none of the trials in {trial_file} has both files on disk; expected the VoxCeleb1 "
            "test speakers' audio below wav/"
        )
    if dropped:
        log.warning("voxceleb1: %d trials dropped (audio not on disk)", dropped)

    test_spk = {speaker[k] for t in trial_list for k in (t.utt_a, t.utt_b)}
    rest = sorted({speaker[k] for k in keys} - test_spk)
    if test_spk:
        spk_split = speaker_disjoint_splits(rest, (0.9, 0.1, 0.0), salt="voxceleb1")
        spk_split.update({s: "test" for s in test_spk})
        policy = "trial-speakers-test+hash"
    else:
        spk_split = speaker_disjoint_splits(rest, DEFAULT_FRACTIONS, salt="voxceleb1")
        policy = "speaker-hash"

    if iden_file is None and iden_split == "auto":
        sid = per_speaker_splits(group_by((speaker[k], k) for k in keys), DEFAULT_FRACTIONS)
        sid_policy = "utterance-hash"
    else:
        sid_policy = "iden_split" if iden_file is not None else "none"

    utts = [
        Utterance(
            utt_id=k,
            path=rel_posix(on_disk[k], path),
            speaker=speaker[k],
            split=spk_split[speaker[k]],
            duration_s=durations[k],
            kind="sentence",
            sid_split=sid.get(k),
        )
        for k in keys
    ]
    if listed_missing:
        log.warning("voxceleb1: %d files listed in %s are not on disk", len(listed_missing), iden_file)
    meta = {
        "adapter": "voxceleb1",
        "split_policy": policy,
        "sid_split_policy": sid_policy,
        "iden_split_file": str(iden_file) if iden_file else None,
        "trial_file": str(trial_file) if trial_file else None,
        "listed_missing": len(listed_missing),
        "trials_dropped": dropped,
        **bad.as_meta(),
    }
    return Manifest(
        corpus_id=f"voxceleb1:{path.resolve()}",
        root=path,
        utterances=utts,
        trials=trial_list,
        meta=meta,
    )
