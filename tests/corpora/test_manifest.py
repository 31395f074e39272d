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


# -- schema validation of loaded manifests (issue #18, item 13) ---------------------------------
def _saved_lines(tmp_path: Path) -> list[dict]:
    _manifest().save(tmp_path)
    return [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]


def _write_lines(tmp_path: Path, lines: list[object]) -> Path:
    f = tmp_path / "manifest.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return f


# (what to change: line index 0 = header, key, new value or a callable on the line), words expected
ROW_CASES = [
    ((1, "speaker", 123), "field 'speaker' must be a non-empty string, got 123 (integer)"),
    ((1, "utt_id", 42), "field 'utt_id' must be a non-empty string, got 42 (integer)"),
    ((2, "text", ["a", "b"]), "field 'text' must be a string or null, got [\"a\", \"b\"] (list)"),
    ((3, "path", 7), "field 'path' must be a non-empty string, got 7 (integer)"),
    ((2, "duration_s", "long"), "field 'duration_s' must be a positive, finite number of seconds, got \"long\" (string)"),
    ((2, "duration_s", -1.0), "field 'duration_s' must be a positive, finite number"),
    ((2, "duration_s", float("nan")), "field 'duration_s' must be a positive, finite number"),
    ((2, "duration_s", True), "got true (boolean)"),
    ((4, "split", "valid"), "field 'split' must be one of train, dev, test, got \"valid\" (string)"),
    ((4, "sid_split", 3), "field 'sid_split' must be one of train, dev, test, or null, got 3"),
    ((4, "keyword", False), "field 'keyword' must be a string or null, got false (boolean)"),
    ((4, "intent", {"a": 1}), "field 'intent' must be a string or null"),
    ((4, "emotion", 1.5), "field 'emotion' must be a string or null"),
    ((4, "kind", ""), "field 'kind' must be a non-empty string"),
    ((1, "phones", "sil hh ah"), "field 'phones' must be a list of [phone, start_s, end_s]"),
    ((1, "phones", [["sil", 0.0]]), "field 'phones[0]' must be [phone, start_s, end_s]"),
    ((1, "phones", [["sil", "0", 0.1]]), "field 'phones[0]' must be [phone, start_s, end_s]"),
    ((1, "phones", [[3, 0.0, 0.1]]), "field 'phones[0]' must be [phone, start_s, end_s]"),
    ((1, "phones", [["sil", 0.2, 0.1]]), "field 'phones[0]' must be a segment with finite times 0 <= start_s <= end_s"),
    ((1, "phones", [["sil", -0.1, 0.1]]), "0 <= start_s <= end_s"),
    ((1, "phones", [["sil", 0.0, 0.5], ["ah", 0.4, 0.9]]), "field 'phones[1]' must be a segment starting at or after"),
    ((1, "phones", [["sil", 0.0, 9.0]]), "ending by the utterance's duration_s (1.5 s)"),
    ((1, "words", [["hello", 0.1]]), "field 'words[0]' must be [word, start_s, end_s]"),
    ((1, "folds", ["train", "valid"]), "field 'folds' must be a list of splits (train, dev, test), one per fold"),
    ((1, "folds", "train"), "field 'folds' must be a list of splits"),
    ((1, "colour", "red"), "unknown field 'colour'; valid fields: utt_id, path"),
    ((1, "speaker", None), "field 'speaker' must be a non-empty string, got null"),
]


@pytest.mark.parametrize(("change", "words"), ROW_CASES, ids=[f"{c[1]}={c[2]!r}"[:40] for c, _ in ROW_CASES])
def test_wrong_field_types_are_one_line_errors_with_file_line_and_field(
    tmp_path: Path, change: tuple[int, str, object], words: str
) -> None:
    lines = _saved_lines(tmp_path)
    i, key, value = change
    lines[i][key] = value
    f = _write_lines(tmp_path, lines)
    with pytest.raises(CorpusError) as err:
        Manifest.load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}:{i + 1}: "), msg
    assert words in msg, msg
    assert "regenerate the manifest" in msg or "fix" in msg


def test_missing_required_field_names_it(tmp_path: Path) -> None:
    lines = _saved_lines(tmp_path)
    del lines[3]["duration_s"]
    f = _write_lines(tmp_path, lines)
    with pytest.raises(CorpusError, match=rf"^{f}:4: field 'duration_s' \(a positive, finite number of seconds\) is missing"):
        Manifest.load(tmp_path)


HEADER_CASES = [
    (lambda h: {k: v for k, v in h.items() if k != "corpus_id"}, "the header has no 'corpus_id'"),
    (lambda h: ["unit", [], []], "the header must be a JSON object"),
    (lambda h: {**h, "corpus_id": 5}, "field 'corpus_id' must be a non-empty string, got 5 (integer)"),
    (lambda h: {**h, "trials": [["b1", "b2"]]}, "field 'trials[0]' must be [utt_a, utt_b, target]"),
    (lambda h: {**h, "trials": [["b1", "b2", 2]]}, "field 'trials[0]' must be [utt_a, utt_b, target]"),
    (lambda h: {**h, "trials": "b1 b2 1"}, "field 'trials' must be a list"),
    (lambda h: {**h, "trials": [["b1", "zz", 1]]}, "trials[0] names utterance 'zz', which has no line"),
    (lambda h: {**h, "phone_set": "ah hh"}, "field 'phone_set' must be a list of non-empty strings"),
    (lambda h: {**h, "phone_set": ["ah", "ah", "hh", "sil"]}, "a list of distinct phones"),
    (lambda h: {**h, "phone_set": ["ah", "sil"]}, "phones[1] has phone 'hh', which is not in the header's phone_set"),
    (lambda h: {**h, "meta": [1]}, "field 'meta' must be a JSON object"),
    (lambda h: {**h, "format": "x"}, "field 'format' must be 'deepwide-manifest/1', got \"x\""),
    (lambda h: {**h, "format": "deepwide-manifest/7"}, "newer than this deepwide reads"),
]


@pytest.mark.parametrize(("edit", "words"), HEADER_CASES, ids=[w[:30] for _, w in HEADER_CASES])
def test_bad_headers_are_one_line_errors(tmp_path: Path, edit, words: str) -> None:  # type: ignore[no-untyped-def]
    lines = _saved_lines(tmp_path)
    lines[0] = edit(lines[0])
    f = _write_lines(tmp_path, lines)
    with pytest.raises(CorpusError) as err:
        Manifest.load(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and words in msg, msg
    # header problems are on line 1, except a phone missing from the set (found on its row)
    assert msg.startswith(f"{f}:1: ") or msg.startswith(f"{f}:2: "), msg


def test_duplicate_ids_name_both_lines_and_bad_json_names_its_line(tmp_path: Path) -> None:
    lines = _saved_lines(tmp_path)
    lines.append(dict(lines[2]))
    f = _write_lines(tmp_path, lines)
    with pytest.raises(CorpusError, match=rf"^{f}:7: utt_id 'a2' repeats line 3"):
        Manifest.load(tmp_path)
    text = f.read_text().splitlines()
    f.write_text("\n".join(text[:6] + ["", '{"utt_id": "x",']) + "\n")  # a blank line 7 still counts
    with pytest.raises(CorpusError, match=rf"^{f}:8: not valid JSON"):
        Manifest.load(tmp_path)
    f.write_text("")
    with pytest.raises(CorpusError, match="header line is missing"):
        Manifest.load(tmp_path)


def test_pauses_and_touching_segments_are_valid(tmp_path: Path) -> None:
    lines = _saved_lines(tmp_path)
    lines[1]["phones"] = [["sil", 0, 0.1], ["", 0.1, 0.1], ["ah", 0.1, 1.5]]  # int times, empty pause
    lines[1]["words"] = [["hello", 0.1, 0.9], ["there", 0.8, 1.5]]  # words may overlap (TIMIT does)
    _write_lines(tmp_path, lines)
    back = Manifest.load(tmp_path)
    assert back.by_id()["a1"].phones[0] == ("sil", 0.0, 0.1)


def test_corpus_info_cli_gives_one_line_for_a_bad_manifest(tmp_path: Path) -> None:
    import subprocess
    import sys

    lines = _saved_lines(tmp_path)
    lines[2]["duration_s"] = "long"
    f = _write_lines(tmp_path, lines)
    proc = subprocess.run(
        [sys.executable, "-m", "deepwide", "corpus", "info", str(tmp_path), "--no-baselines"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and f"{f}:3: field 'duration_s'" in err[0], proc.stderr
