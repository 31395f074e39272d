"""Fluent Speech Commands adapter (intent classification).

Layout read::

    PATH/data/train_data.csv     ",path,speakerId,transcription,action,object,location"
    PATH/data/valid_data.csv     (the first, unnamed column is a row index and is ignored)
    PATH/data/test_data.csv
    PATH/wavs/speakers/SPEAKER/UUID.wav   (the ``path`` column, relative to PATH)

``PATH`` may also be the ``data`` folder itself. Splits are the official ones
(train → train, valid → dev, test → test), which are speaker-disjoint. ``intent`` is
``action_object_location`` (SUPERB's IC task predicts the three slots; their product has 31
values in the official data), ``text`` the transcription, ``kind`` ``command``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path, PurePosixPath

from deepwide.corpora import CORPORA
from deepwide.corpora.common import (
    BadFiles,
    header_or_report,
    iter_progress,
    malformed,
    require_file,
)
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.errors import CorpusError

log = logging.getLogger(__name__)

CSV_FILES = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")
_EXPECTED_HEADER = "a header with columns " + ",".join(COLUMNS)


def intent_label(action: str, obj: str, location: str) -> str:
    """The combined intent label: ``action_object_location`` (e.g. ``increase_heat_kitchen``)."""
    return f"{action}_{obj}_{location}"


def _utt_id(rel: str) -> str:
    p = PurePosixPath(rel).with_suffix("")
    parts = p.parts[2:] if p.parts[:2] == ("wavs", "speakers") else p.parts
    return "/".join(parts)


def read_split_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Read one FSC ``*_data.csv``.

    Returns:
        ``[(line_number, row), …]`` with the :data:`COLUMNS` of each row, stripped.

    Raises:
        CorpusError: missing file, missing columns, or a row with an empty field (file and line).
    """
    require_file(path, f"Fluent Speech Commands' {path.name} ({_EXPECTED_HEADER})")
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise CorpusError(f"{path} is empty; expected {_EXPECTED_HEADER}")
        names = [h.strip() for h in header]
        lacking = [c for c in COLUMNS if c not in names]
        if lacking:
            raise CorpusError(f"{path}:1: header lacks {', '.join(lacking)}; expected {_EXPECTED_HEADER}")
        idx = {c: names.index(c) for c in COLUMNS}
        for rec in reader:
            lineno = reader.line_num
            if not any(f.strip() for f in rec):
                continue
            if len(rec) != len(names) or any(not rec[i].strip() for i in idx.values()):
                raise malformed(path, lineno, f"{len(names)} comma-separated fields ({','.join(COLUMNS)} non-empty)", ",".join(rec))
            rows.append((lineno, {c: rec[i].strip() for c, i in idx.items()}))
    return rows


@CORPORA.register("fluent")
def fluent_corpus(path: Path, *, on_bad_audio: str = "error") -> Manifest:
    """Read Fluent Speech Commands into a manifest with ``intent`` labels.

    Args:
        path: the dataset folder (holding ``data/`` and ``wavs/``) or its ``data/`` folder.
        on_bad_audio: ``"error"`` or ``"skip"`` (skipped files go to ``meta["skipped"]``).

    Returns:
        A :class:`Manifest` with ``text`` and ``intent``; ``kind="command"``.

    Raises:
        CorpusError: a missing or malformed CSV (file and line named), or an utterance listed
            twice.
    """
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected Fluent Speech Commands with data/*.csv")
    if (path / "data").is_dir() or not (path / CSV_FILES["train"]).is_file():
        root, data = path, path / "data"
    else:
        root, data = path.parent, path
    bad = BadFiles(on_bad_audio)
    utts: list[Utterance] = []
    spk_splits: dict[str, set[str]] = {}
    for split, name in CSV_FILES.items():
        csv_path = data / name
        for lineno, row in iter_progress(read_split_csv(csv_path), f"fluent {split}"):
            rel = row["path"].replace("\\", "/")
            if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
                raise malformed(csv_path, lineno, "a path relative to the dataset folder (wavs/speakers/…)", rel)
            hdr = header_or_report(root / rel, bad)
            if hdr is None:
                continue
            spk = row["speakerId"]
            spk_splits.setdefault(spk, set()).add(split)
            utts.append(
                Utterance(
                    utt_id=_utt_id(rel), path=rel, speaker=spk, split=split, duration_s=hdr[0],
                    kind="command", text=row["transcription"],
                    intent=intent_label(row["action"], row["object"], row["location"]),
                )
            )  # fmt: skip
    shared = sorted(s for s, sp in spk_splits.items() if len(sp) > 1)
    if shared:
        log.warning("fluent: %d speakers appear in more than one split, e.g. %s", len(shared), shared[0])
    meta = {
        "adapter": "fluent",
        "split_policy": "official (train/valid/test csv)",
        "speakers_in_several_splits": len(shared),
        **bad.as_meta(),
    }
    return Manifest(corpus_id=f"fluent:{path.resolve()}", root=root, utterances=utts, meta=meta)
