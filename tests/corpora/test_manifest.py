"""Tests of deepwide.corpora.manifest: JSONL round trip, canonical hash, selection, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepwide.corpora.manifest import Manifest, Trial, Utterance
from deepwide.errors import CorpusError


def _manifest(root: Path | str = "/tmp/x") -> Manifest:
    utts = [
        Utterance(
            utt_id="a1", path="audio/a1.flac", speaker="A", split="train", duration_s=1.5,
            kind="sentence", sid_split="train", text="hello there",
            phones=(("sil", 0.0, 0.1), ("hh", 0.1, 0.2), ("ah", 0.2, 1.5)),
            words=(("hello", 0.1, 0.9), ("there", 0.9, 1.5)),
        ),
        Utterance(utt_id="a2", path="audio/a2.flac", speaker="A", split="train", duration_s=1.0,
                  kind="keyword", keyword="yes", text="yes"),
        Utterance(utt_id="b1", path="/abs/b1.wav", speaker="B", split="test", duration_s=2.0,
                  kind="sentence", sid_split="test", text="go"),
        Utterance(utt_id="b2", path="audio/b2.flac", speaker="B", split="test", duration_s=2.0,
                  kind="command", intent="activate_lights_none"),
        Utterance(utt_id="c1", path="audio/c1.flac", speaker="C", split="dev", duration_s=0.5,
                  kind="sentence", sid_split="dev"),
    ]
    return Manifest(
        corpus_id="unit",
        root=Path(root),
        utterances=utts,
        phone_set=("ah", "hh", "sil"),
        trials=[Trial("b1", "b2", True), Trial("a1", "b1", False)],
        meta={"note": "unit test", "n": 3},
    )


def test_round_trip_preserves_everything(tmp_path: Path) -> None:
    m = _manifest()
    path = m.save(tmp_path)
    assert path == tmp_path / "manifest.jsonl"
    back = Manifest.load(tmp_path)
    assert back.utterances == m.utterances
    assert back.trials == m.trials
    assert back.phone_set == m.phone_set
    assert back.meta == m.meta
    assert back.corpus_id == "unit"
    assert back.root == tmp_path  # root is the manifest's folder after loading
    assert back.content_hash() == m.content_hash()
    # segments come back as tuples of (str, float, float)
    assert back.by_id()["a1"].phones[1] == ("hh", 0.1, 0.2)


def test_jsonl_layout_header_then_rows(tmp_path: Path) -> None:
    lines = _manifest().to_jsonl().splitlines()
    head = json.loads(lines[0])
    assert head["format"] == "deepwide-manifest/1"
    assert head["trials"] == [["b1", "b2", 1], ["a1", "b1", 0]]
    rows = [json.loads(line) for line in lines[1:]]
    assert [r["utt_id"] for r in rows] == ["a1", "a2", "b1", "b2", "c1"]
    # None fields and empty segment lists are left out of the rows
    assert "keyword" not in rows[0] and "phones" not in rows[1] and "sid_split" not in rows[1]


def test_hash_ignores_root_but_sees_content() -> None:
    a, b = _manifest("/one"), _manifest("/two")
    assert a.content_hash() == b.content_hash()
    c = _manifest()
    c.utterances[0] = Utterance(**{**c.utterances[0].__dict__, "duration_s": 1.6})
    assert c.content_hash() != a.content_hash()
    d = _manifest()
    d.trials = d.trials[:1]
    assert d.content_hash() != a.content_hash()


def test_select_by_content_or_sid_split() -> None:
    m = _manifest()
    test = m.select(["test"])
    assert [u.utt_id for u in test] == ["b1", "b2"]
    assert test.trials == [Trial("b1", "b2", True)]  # a1 is not selected → its trial drops
    dev = m.select(["dev"])
    assert [u.utt_id for u in dev] == ["c1"]
    assert m.select(None) is m
    assert len(m.select(["train", "dev", "test"])) == 5


def test_audio_path_relative_and_absolute() -> None:
    m = _manifest("/data/corpus")
    by = m.by_id()
    assert m.audio_path(by["a1"]) == Path("/data/corpus/audio/a1.flac")
    assert m.audio_path(by["b1"]) == Path("/abs/b1.wav")


def test_label_sets_and_speakers() -> None:
    m = _manifest()
    assert m.speakers() == ["A", "B", "C"]
    assert m.label_sets() == {"keyword": ["yes"], "intent": ["activate_lights_none"]}


def test_duplicate_ids_and_bad_splits_are_rejected() -> None:
    m = _manifest()
    with pytest.raises(CorpusError, match="duplicate"):
        Manifest("dup", Path("."), [m.utterances[0], m.utterances[0]])
    with pytest.raises(ValueError, match="split"):
        Utterance(utt_id="x", path="x", speaker="s", split="valid", duration_s=1.0)
    with pytest.raises(ValueError, match="sid_split"):
        Utterance(utt_id="x", path="x", speaker="s", split="train", duration_s=1.0, sid_split="eval")


def test_missing_and_malformed_manifest(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no manifest"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"corpus_id": "x"}\n{not json\n')
    with pytest.raises(CorpusError, match="malformed"):
        Manifest.load(tmp_path)
