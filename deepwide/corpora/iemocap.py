"""IEMOCAP adapter (emotion recognition) with SUPERB's ER protocol.

Layout read (``IEMOCAP_full_release``; ``PATH`` may also be the folder holding it)::

    PATH/Session1 … Session5/
      dialog/EmoEvaluation/<dialog>.txt     "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]"
      dialog/transcriptions/<dialog>.txt    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."  (optional)
      sentences/wav/<dialog>/<utt>.wav      16 kHz mono

Only the ``[START - END] UTT LABEL [V, A, D]`` lines of an EmoEvaluation file are read (the
evaluators' lines below each of them and the ``%`` header are not); a line that starts with
``[`` but does not have that form is an error naming the file and line.

SUPERB's ER protocol (s3prl's ``emotion`` downstream): four classes — ``neu`` → ``neutral``,
``hap`` and ``exc`` → ``happy``, ``sad`` → ``sad``, ``ang`` → ``angry``; every other label
(``fru sur fea dis oth xxx`` …) is dropped, counted per label in ``meta["dropped"]`` and
logged as a warning. Five folds, leave one session out: fold ``k`` (``test_session=k``) tests
on Session ``k``; the utterances of the other four sessions are cut 80/20 into train/dev at
random (seeded: ranked by :func:`deepwide.corpora.common.hashed_splits`, the same salt in
every fold), as s3prl carves ~20 % of its training utterances for dev.

Manifest: ``utt_id`` = the utterance name (``Ses01F_impro01_F000``), ``speaker`` = session +
the gender letter of its last part (``Ses01_F``; 10 speakers), ``emotion`` one of
:data:`CLASSES`, ``text`` from the transcription when present, ``kind`` ``sentence``, no
``sid_split`` (not a speaker-ID corpus). ``iemocap:PATH`` is the whole protocol: every
utterance carries its split in each of the five folds (``folds``, fold ``k`` at index
``k - 1``), so one store serves all five (``deepwide probe --task er`` reports the mean and the
spread over folds), and ``split`` is fold 1's. ``iemocap-fold3:PATH`` is fold 3 alone (no
``folds``; ``split`` is fold 3's); its corpus id names the fold (``iemocap-fold3:/abs/PATH``),
so each fold's stores are kept apart.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from pathlib import Path

from deepwide.corpora import CORPORA
from deepwide.corpora.common import (
    BadFiles,
    hashed_splits,
    header_or_report,
    iter_progress,
    malformed,
    read_text_lines,
    rel_posix,
    require_dir,
)
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

#: Session numbers; fold k tests on Session k.
SESSIONS = (1, 2, 3, 4, 5)
#: IEMOCAP label -> SUPERB ER class (``exc`` merged into ``happy``); other labels are dropped.
LABEL_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
#: The four ER classes.
CLASSES = ("neutral", "happy", "sad", "angry")
#: The sample rate of ``sentences/wav``.
SAMPLE_RATE = 16_000
#: (train, dev, test) fractions of the training sessions' utterances (s3prl: valid_ratio 0.2).
DEV_FRACTIONS = (0.8, 0.2, 0.0)
#: Salt of the dev carve (the same in every fold, as s3prl seeds its split with 0).
DEV_SALT = "iemocap-dev"

_NUM = r"\d+(?:\.\d*)?"
_EMO_LINE = re.compile(
    rf"\[\s*({_NUM})\s*-\s*({_NUM})\s*\]\s+(Ses0[1-5][FM]_\S+_([FM])\d+)\s+([a-z]+)\s+"
    rf"\[\s*-?{_NUM}\s*,\s*-?{_NUM}\s*,\s*-?{_NUM}\s*\]"
)
_EMO_EXPECTED = "'[START - END]<TAB>SesNNG_DIALOG_GNNN<TAB>LABEL<TAB>[V, A, D]'"
_TRANS_LINE = re.compile(r"(\S+)\s+\[[^\]]*\]:\s?(.*)")


def speaker_of(utt_id: str) -> str:
    """The speaker of an utterance: session + its last part's gender letter.

    Example: ``Ses01F_impro01_M003`` → ``Ses01_M`` (the male actor of session 1, although the
    dialog's first letter names the female one).
    """
    return f"{utt_id[:5]}_{utt_id.rsplit('_', 1)[1][0]}"


def read_emo_evaluation(path: Path) -> list[tuple[int, str, str]]:
    """Read the utterance lines of one ``EmoEvaluation/<dialog>.txt``.

    Returns:
        ``[(line_number, utt_id, label), …]`` in file order; ``label`` as written (``neu``,
        ``exc``, ``xxx`` …).

    Raises:
        CorpusError: a line starting with ``[`` that is not ``[START - END] UTT LABEL [V, A,
            D]``, or an utterance of another dialog (file and line named).
    """
    dialog = path.stem
    out = []
    for lineno, line in read_text_lines(path, f"an IEMOCAP label file ({_EMO_EXPECTED} lines)"):
        if not line.startswith("["):
            continue
        m = _EMO_LINE.fullmatch(line)
        if m is None:
            raise malformed(path, lineno, _EMO_EXPECTED, line)
        utt_id = m.group(3)
        if utt_id.rsplit("_", 1)[0] != dialog:
            raise malformed(path, lineno, f"an utterance of dialog {dialog} ({dialog}_F000 …)", line)
        out.append((lineno, utt_id, m.group(5)))
    return out


def read_transcriptions(path: Path) -> dict[str, str]:
    """``{utt_id: text}`` from one ``transcriptions/<dialog>.txt``; other lines are ignored."""
    out = {}
    for _, line in read_text_lines(path, "an IEMOCAP transcription file"):
        m = _TRANS_LINE.fullmatch(line)
        if m is not None:
            out[m.group(1)] = m.group(2).strip()
    return out


def _sessions_root(path: Path) -> Path:
    require_dir(path, "IEMOCAP_full_release with Session1 … Session5")
    nested = path / "IEMOCAP_full_release"
    if not (path / "Session1").is_dir() and nested.is_dir():
        path = nested
    for k in SESSIONS:
        if not (path / f"Session{k}").is_dir():
            raise CorpusError(
                f"missing {path / f'Session{k}'}; expected IEMOCAP_full_release with Session1 … Session5, "
                "each holding dialog/EmoEvaluation/ and sentences/wav/"
            )
    return path


def _label_files(session: Path) -> list[Path]:
    emo = require_dir(session / "dialog" / "EmoEvaluation",
                      "IEMOCAP's label files dialog/EmoEvaluation/<dialog>.txt")  # fmt: skip
    files = sorted(p for p in emo.glob("*.txt") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CorpusError(f"{emo} has no <dialog>.txt label files; expected IEMOCAP's EmoEvaluation/Ses0NX_….txt")
    return files


def fold_splits(utts_by_session: dict[int, list[str]], test_session: int) -> dict[str, str]:
    """The split of every utterance in fold ``test_session``: Session ``test_session`` is
    ``test``; the other sessions' utterances are ranked by a salted hash and cut 80/20 into
    ``train``/``dev`` (:func:`deepwide.corpora.common.hashed_splits`, the same salt in every fold).

    Args:
        utts_by_session: session number -> its utterance ids.
        test_session: the fold, one of :data:`SESSIONS`.

    Returns:
        ``{utt_id: split}`` for every utterance given.
    """
    train_ids = [u for k, us in utts_by_session.items() if k != test_session for u in us]
    split = hashed_splits(train_ids, DEV_FRACTIONS, DEV_SALT)
    split.update({u: "test" for u in utts_by_session.get(test_session, ())})
    return split


def iemocap_corpus(path: Path, *, test_session: int | None = None, on_bad_audio: str = "error") -> Manifest:
    """Read IEMOCAP into a manifest for one fold of SUPERB's 4-class ER protocol.

    Args:
        path: ``IEMOCAP_full_release`` (holding ``Session1`` … ``Session5``) or its parent.
        test_session: one fold, 1 … 5: Session ``test_session`` is ``test``; the other
            sessions' utterances are split 80/20 into ``train``/``dev`` (seeded hash; see
            :func:`fold_splits`). ``None``: all five folds in each utterance's ``folds``,
            ``split`` that of fold 1.
        on_bad_audio: ``"error"`` or ``"skip"`` (skipped files go to ``meta["skipped"]``).

    Returns:
        A :class:`Manifest` of the utterances labelled with one of :data:`CLASSES`
        (``emotion``), ``text`` where a transcription has it. ``meta["dropped"]`` counts the
        utterances of every other label, ``meta["kept"]`` those of each class.

    Raises:
        ConfigError: ``test_session`` outside 1 … 5.
        CorpusError: a missing session or label folder, a malformed label line or an
            utterance labelled twice (file and line named), the wav of a kept utterance
            missing, or no utterance of the four classes.
        AudioError: a kept utterance's wav unreadable, empty or not 16 kHz.
    """
    if test_session is not None and test_session not in SESSIONS:
        raise ConfigError(f"test_session={test_session!r} is not valid; use one of 1, 2, 3, 4, 5 (the fold)")
    root = _sessions_root(Path(path))
    bad = BadFiles(on_bad_audio)
    dropped: Counter[str] = Counter()
    seen: dict[str, str] = {}
    kept: list[tuple[int, str, str, Path]] = []  # (session, utt_id, emotion, wav)
    texts: dict[str, str] = {}
    for k in SESSIONS:
        session = root / f"Session{k}"
        for emo_file in _label_files(session):
            trans = session / "dialog" / "transcriptions" / emo_file.name
            if trans.is_file():
                texts.update(read_transcriptions(trans))
            for lineno, utt_id, label in read_emo_evaluation(emo_file):
                where = f"{emo_file}:{lineno}"
                if utt_id[3:5] != f"{k:02d}":
                    raise malformed(emo_file, lineno, f"an utterance of session {k} (Ses{k:02d}…)", utt_id)
                if utt_id in seen:
                    raise CorpusError(f"{where}: utterance {utt_id} is labelled again (first at {seen[utt_id]}); "
                                      "remove one of the lines")  # fmt: skip
                seen[utt_id] = where
                if label not in LABEL_MAP:
                    dropped[label] += 1
                    continue
                wav = session / "sentences" / "wav" / emo_file.stem / f"{utt_id}.wav"
                if not wav.is_file():
                    bad.report(wav, f"labelled in {where} but not on disk", audio=False)
                    continue
                kept.append((k, utt_id, LABEL_MAP[label], wav))

    utts_by_session: dict[int, list[tuple[str, str, Path, float]]] = {k: [] for k in SESSIONS}
    for k, utt_id, emotion, wav in iter_progress(kept, "iemocap headers"):
        hdr = header_or_report(wav, bad)
        if hdr is None:
            continue
        if hdr[1] != SAMPLE_RATE:
            bad.report(wav, f"sample rate {hdr[1]} Hz, but IEMOCAP's sentences/wav are {SAMPLE_RATE} Hz")
            continue
        utts_by_session[k].append((utt_id, emotion, wav, hdr[0]))
    if not any(utts_by_session.values()):
        raise CorpusError(
            f"{root}: no utterance labelled {', '.join(sorted(LABEL_MAP))}; expected IEMOCAP's EmoEvaluation files"
        )
    folds = SESSIONS if test_session is None else (test_session,)
    for k in folds:
        if not utts_by_session[k]:
            raise CorpusError(
                f"{root / f'Session{k}'}: no usable utterance of the four classes for the test fold {k}"
            )
    ids_by_session = {k: [u[0] for u in us] for k, us in utts_by_session.items()}
    fold_split = [fold_splits(ids_by_session, k) for k in folds]
    rows = sorted(u for us in utts_by_session.values() for u in us)
    utts = [
        Utterance(
            utt_id=utt_id, path=rel_posix(wav, root), speaker=speaker_of(utt_id), split=fold_split[0][utt_id],
            duration_s=dur, kind="sentence", text=texts.get(utt_id), emotion=emotion,
            folds=tuple(f[utt_id] for f in fold_split) if test_session is None else (),
        )
        for utt_id, emotion, wav, dur in rows
    ]  # fmt: skip
    if dropped:
        shown = ", ".join(f"{lab} {n}" for lab, n in sorted(dropped.items()))
        log.warning("iemocap: %d labelled utterances dropped (not neu/hap/exc/sad/ang): %s",
                    sum(dropped.values()), shown)  # fmt: skip
    without_text = sum(u.text is None for u in utts)
    if without_text:
        log.info("iemocap: %d utterances have no transcription line (text left empty)", without_text)
    meta = {
        "adapter": "iemocap",
        "protocol": "superb-er (4 classes, exc -> happy; leave one session out)",
        "test_session": test_session if test_session is not None else "all (folds 1-5; split = fold 1)",
        "split_policy": (f"test = Session{test_session}" if test_session is not None else
                         "fold k: test = Session k")
        + "; other sessions hashed 80/20 into train/dev",
        "kept": dict(sorted(Counter(u.emotion for u in utts).items())),
        "dropped": dict(sorted(dropped.items())),
        "without_text": without_text,
        **bad.as_meta(),
    }
    name = "iemocap" if test_session is None else f"iemocap-fold{test_session}"
    corpus_id = f"{name}:{root.resolve()}"
    return Manifest(corpus_id=corpus_id, root=root, utterances=utts, meta=meta)


CORPORA.add("iemocap", iemocap_corpus)
for _k in SESSIONS:
    CORPORA.add(f"iemocap-fold{_k}", functools.partial(iemocap_corpus, test_session=_k))
