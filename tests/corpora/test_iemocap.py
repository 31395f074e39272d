"""The IEMOCAP adapter (SUPERB's ER protocol) on a fabricated copy of IEMOCAP_full_release."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from deepwide.corpora import Manifest, resolve_corpus
from deepwide.corpora.common import split_counts
from deepwide.corpora.iemocap import CLASSES, iemocap_corpus
from deepwide.errors import AudioError, ConfigError, CorpusError, UnknownNameError
from tests.corpora import fabricate as fab

#: SUPERB's 4 classes, written out here independently of the adapter's table.
SUPERB_ER = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}


@pytest.fixture(scope="module")
def iemo(tmp_path_factory: pytest.TempPathFactory) -> fab.Fabricated:
    return fab.make_iemocap(tmp_path_factory.mktemp("iemocap"))


@pytest.fixture(scope="module")
def folds(iemo: fab.Fabricated) -> dict[int, Manifest]:
    return {k: resolve_corpus(f"iemocap-fold{k}:{iemo.root}") for k in range(1, 6)}


def _kept(iemo: fab.Fabricated) -> dict[str, dict]:
    return {u: t for u, t in iemo.utts.items() if t["label"] in SUPERB_ER}


def _independent_labels(root: Path) -> dict[str, str]:
    """``{utt_id: label}`` from every EmoEvaluation file, by one plain regex."""
    line = re.compile(r"^\[\d+\.\d+ - \d+\.\d+\]\t(Ses\w+)\t([a-z]{3})\t\[[\d., ]+\]$", re.MULTILINE)
    out: dict[str, str] = {}
    for f in sorted(root.glob("Session[1-5]/dialog/EmoEvaluation/*.txt")):
        out.update(line.findall(f.read_text()))
    return out


def test_iemocap_classes_merges_speakers_and_text(iemo: fab.Fabricated) -> None:
    m = resolve_corpus(f"iemocap:{iemo.root}")
    kept = _kept(iemo)
    assert {u.utt_id for u in m} == set(kept) and len(m) == len(kept) > 0
    assert m.label_sets() == {"emotion": sorted(CLASSES)}
    for u in m:
        truth = kept[u.utt_id]
        assert u.emotion == SUPERB_ER[truth["label"]]
        assert (u.speaker, u.text, u.kind, u.sid_split) == (truth["speaker"], truth["text"], "sentence", None)
        assert u.duration_s == pytest.approx(truth["duration_s"])
        assert m.audio_path(u).is_file() and u.path.startswith(f"Session{truth['session']}/sentences/wav/")
    exc = [u for u in m if kept[u.utt_id]["label"] == "exc"]
    assert exc and all(u.emotion == "happy" for u in exc)
    assert len(m.speakers()) == 10 and "Ses03_M" in m.speakers()
    assert m.by_id()["Ses01F_impro01_M001"].speaker == "Ses01_M"  # the gender of the turn, not of the dialog
    assert any(u.text is None for u in m) and m.meta["without_text"] == sum(u.text is None for u in m)
    assert m.meta["kept"] == dict(Counter(SUPERB_ER[t["label"]] for t in kept.values()))
    assert resolve_corpus(f"iemocap:{iemo.root.parent}").content_hash() == m.content_hash()  # parent folder


def test_iemocap_dropped_labels_are_counted_and_logged(iemo: fab.Fabricated, caplog: pytest.LogCaptureFixture) -> None:
    dropped = Counter(t["label"] for t in iemo.utts.values() if t["label"] not in SUPERB_ER)
    assert {"fru", "xxx"} <= set(dropped)
    with caplog.at_level(logging.WARNING, logger="deepwide.corpora.iemocap"):
        m = iemocap_corpus(iemo.root)
    assert m.meta["dropped"] == dict(dropped)
    [rec] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert rec.levelno == logging.WARNING
    msg = rec.getMessage()
    assert f"{sum(dropped.values())} labelled utterances dropped" in msg
    for label, n in dropped.items():
        assert f"{label} {n}" in msg


def test_iemocap_labels_match_an_independent_reading(iemo: fab.Fabricated, folds: dict[int, Manifest]) -> None:
    labels = _independent_labels(iemo.root)
    assert labels == {u: t["label"] for u, t in iemo.utts.items()}  # the regex reads what was written
    expected = {u: SUPERB_ER[lab] for u, lab in labels.items() if lab in SUPERB_ER}
    for m in folds.values():
        assert {u.utt_id: u.emotion for u in m} == expected
        assert m.meta["dropped"] == dict(Counter(lab for lab in labels.values() if lab not in SUPERB_ER))


def test_iemocap_folds_leave_one_session_out(iemo: fab.Fabricated, folds: dict[int, Manifest]) -> None:
    kept = _kept(iemo)
    tested: list[str] = []
    for k, m in folds.items():
        session = {u.utt_id: kept[u.utt_id]["session"] for u in m}
        test = [u.utt_id for u in m if u.split == "test"]
        assert test and {session[u] for u in test} == {k}
        rest = [u for u in m if u.split != "test"]
        assert {session[u.utt_id] for u in rest} == set(range(1, 6)) - {k}
        n_train, n_dev, _ = split_counts(len(rest), (0.8, 0.2, 0.0))
        assert Counter(u.split for u in rest) == {"train": n_train, "dev": n_dev}
        assert {u.speaker for u in m if u.split == "test"}.isdisjoint({u.speaker for u in rest})
        assert m.meta["test_session"] == k
        tested += test
    assert sorted(tested) == sorted(kept)  # the five test sets cover every kept utterance once
    assert len({m.corpus_id for m in folds.values()}) == 5
    assert len({m.content_hash() for m in folds.values()}) == 5
    assert resolve_corpus(f"iemocap:{iemo.root}", test_session=3).content_hash() == folds[3].content_hash()
    assert iemocap_corpus(iemo.root, test_session=4).content_hash() == folds[4].content_hash()  # seeded
    assert all(u.folds == () for m in folds.values() for u in m)  # a single fold carries no folds


def test_iemocap_whole_protocol_carries_every_fold(iemo: fab.Fabricated, folds: dict[int, Manifest],
                                                   tmp_path: Path) -> None:
    """``iemocap:PATH``: each utterance's ``folds[k-1]`` is its split in fold k, ``split`` fold 1's."""
    whole = resolve_corpus(f"iemocap:{iemo.root}")
    assert whole.corpus_id.startswith("iemocap:") and whole.corpus_id != folds[1].corpus_id
    by_fold = {k: {u.utt_id: u.split for u in m} for k, m in folds.items()}
    assert [u.utt_id for u in whole] == [u.utt_id for u in folds[1]]
    for u in whole:
        assert u.folds == tuple(by_fold[k][u.utt_id] for k in range(1, 6))
        assert u.split == u.folds[0]
    assert whole.meta["test_session"].startswith("all")
    again = Manifest.load(whole.save(tmp_path))
    assert [u.folds for u in again] == [u.folds for u in whole] and again.content_hash() == whole.content_hash()


def test_iemocap_is_registered(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as exc:
        resolve_corpus(f"iemocapp:{tmp_path}")
    assert "iemocap" in str(exc.value) and "iemocap-fold5" in str(exc.value)
    with pytest.raises(ConfigError, match=r"test_session=6 is not valid; use one of 1, 2, 3, 4, 5"):
        iemocap_corpus(tmp_path, test_session=6)


def test_iemocap_malformed_label_lines(tmp_path: Path) -> None:
    f = fab.make_iemocap(tmp_path, turns_per_speaker=1)
    emo = f.root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    good = emo.read_text()
    lines = good.splitlines()
    lineno = f.utts["Ses02M_script01_1_M000"]["lineno"]
    lines[lineno - 1] = lines[lineno - 1].replace(" - ", " ").replace("\t[2.5000", "\t[2.5")
    emo.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError) as exc:
        resolve_corpus(f"iemocap:{f.root}")
    msg = str(exc.value)
    assert msg.startswith(f"{emo}:{lineno}: expected '[START - END]<TAB>SesNNG_DIALOG_GNNN<TAB>LABEL<TAB>[V, A, D]'")
    assert "\n" not in msg
    emo.write_text(good.replace("Ses02M_script01_1_M000", "Ses02M_impro01_M000"))
    with pytest.raises(CorpusError, match=re.escape(f"{emo}:{lineno}: expected an utterance of dialog Ses02M_script01_1")):
        resolve_corpus(f"iemocap:{f.root}")
    first = f.utts["Ses02M_script01_1_F000"]["lineno"]
    emo.write_text(good.replace("Ses02M_script01_1_M000", "Ses02M_script01_1_F000"))
    with pytest.raises(CorpusError, match=re.escape(f"{emo}:{lineno}: utterance Ses02M_script01_1_F000 is labelled "
                                                    f"again (first at {emo}:{first})")):  # fmt: skip
        resolve_corpus(f"iemocap:{f.root}")


def test_iemocap_missing_files(tmp_path: Path) -> None:
    f = fab.make_iemocap(tmp_path, turns_per_speaker=2)
    kept = _kept(f)
    utt = next(u for u in sorted(kept) if u.startswith("Ses04"))
    wav = f.root / "Session4" / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav"
    wav.unlink()
    where = f"{kept[utt]['emo_file']}:{kept[utt]['lineno']}"
    with pytest.raises(CorpusError, match=re.escape(f"{wav}: labelled in {where} but not on disk; fix or remove it, "
                                                    "or pass on_bad_audio='skip'")):  # fmt: skip
        resolve_corpus(f"iemocap:{f.root}")
    skipped = iemocap_corpus(f.root, on_bad_audio="skip")
    assert len(skipped) == len(kept) - 1 and skipped.meta["skipped"][0]["path"] == str(wav)

    fab.write_audio(wav, 4000, sr=8000)
    with pytest.raises(AudioError, match=re.escape(f"{wav}: sample rate 8000 Hz, but IEMOCAP's sentences/wav are 16000 Hz")):
        resolve_corpus(f"iemocap:{f.root}")
    fab.write_audio(wav, 4000)

    dropped = next(u for u, t in f.utts.items() if t["label"] not in SUPERB_ER)
    next(f.root.glob(f"Session*/sentences/wav/*/{dropped}.wav")).unlink()
    assert len(resolve_corpus(f"iemocap:{f.root}")) == len(kept)  # audio of dropped labels is not needed

    (f.root / "Session2" / "dialog" / "transcriptions").rename(f.root / "Session2" / "dialog" / "t")
    m = resolve_corpus(f"iemocap:{f.root}")
    assert all(u.text is None for u in m if u.utt_id.startswith("Ses02"))  # transcriptions are optional

    emo_dir = f.root / "Session5" / "dialog" / "EmoEvaluation"
    emo_dir.rename(emo_dir.with_name("x"))
    with pytest.raises(CorpusError, match=re.escape(f"{emo_dir} is not a folder; expected IEMOCAP's label files")):
        resolve_corpus(f"iemocap:{f.root}")
    (f.root / "Session3").rename(f.root / "Session3-old")
    with pytest.raises(CorpusError, match=re.escape(f"missing {f.root / 'Session3'}; expected IEMOCAP_full_release "
                                                    "with Session1 … Session5")):  # fmt: skip
        resolve_corpus(f"iemocap:{f.root}")
