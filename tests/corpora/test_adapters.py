"""Real-corpus adapters on fabricated copies of each on-disk layout."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepwide.corpora import Manifest, resolve_corpus
from deepwide.corpora.common import (
    BadFiles,
    parse_fields,
    per_speaker_splits,
    speaker_disjoint_splits,
    split_counts,
    stable_unit,
)
from deepwide.corpora.librispeech import (
    ARPABET_PHONES,
    arpabet_to_phone,
    librispeech_corpus,
    read_textgrid,
    textgrid_alignment,
)
from deepwide.corpora.speechcommands import silence_windows, speechcommands_corpus
from deepwide.corpora.timit import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    FOLD_61_TO_39,
    TIMIT39,
    TIMIT61,
    fold_phone,
    timit_corpus,
)
from deepwide.corpora.voxceleb1 import voxceleb1_corpus
from deepwide.errors import AudioError, ConfigError, CorpusError, UnknownNameError
from tests.corpora import fabricate as fab


def _speaker_disjoint(m: Manifest) -> bool:
    splits = defaultdict(set)
    for u in m:
        splits[u.speaker].add(u.split)
    return all(len(s) == 1 for s in splits.values())


# -- common -----------------------------------------------------------------------------------
def test_stable_unit_is_deterministic_and_salted() -> None:
    vals = [stable_unit(f"spk{i}") for i in range(200)]
    assert vals == [stable_unit(f"spk{i}") for i in range(200)]
    assert all(0.0 <= v < 1.0 for v in vals)
    assert 0.35 < float(np.mean(vals)) < 0.65  # roughly uniform
    assert stable_unit("spk1", "a") != stable_unit("spk1", "b")


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [(10, (0.8, 0.1, 0.1), (8, 1, 1)), (3, (0.8, 0.1, 0.1), (1, 1, 1)), (40, (0.8, 0.1, 0.1), (32, 4, 4)),
     (4, (0.0, 0.5, 0.5), (0, 2, 2)), (2, (0.8, 0.1, 0.1), (2, 0, 0)), (7, (0.9, 0.1, 0.0), (6, 1, 0))],
)  # fmt: skip
def test_split_counts(n: int, fractions: tuple[float, float, float], expected: tuple[int, int, int]) -> None:
    assert split_counts(n, fractions) == expected


def test_split_counts_rejects_bad_fractions() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        split_counts(10, (0.5, 0.1, 0.1))


def test_speaker_disjoint_splits_ignore_input_order() -> None:
    spk = [f"s{i}" for i in range(20)]
    a = speaker_disjoint_splits(spk)
    b = speaker_disjoint_splits(list(reversed(spk)) + spk[:3])
    assert a == b
    assert Counter(a.values()) == {"train": 16, "dev": 2, "test": 2}
    assert speaker_disjoint_splits(spk, salt="other") != a


def test_per_speaker_splits_cover_each_speaker() -> None:
    utts = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(3)], "c": ["c0", "c1"]}
    sid = per_speaker_splits(utts)
    for spk in ("a", "b"):
        assert {sid[u] for u in utts[spk]} == {"train", "dev", "test"}
    assert Counter(sid[u] for u in utts["a"]) == {"train": 8, "dev": 1, "test": 1}
    assert sid["c0"] == sid["c1"] == "train"


def test_parse_fields_names_file_line_and_expectation(tmp_path: Path) -> None:
    f = tmp_path / "list.txt"
    f.write_text("1 a.wav\n\n2 b.wav extra\n")
    with pytest.raises(CorpusError) as exc:
        parse_fields(f, 2, "'<code> <path>'", what="a list")
    msg = str(exc.value)
    assert f"{f}:3" in msg and "expected '<code> <path>'" in msg and "\n" not in msg
    with pytest.raises(CorpusError, match="missing .*nope.txt; expected a list"):
        parse_fields(tmp_path / "nope.txt", 2, "x", what="a list")


def test_bad_files_policy() -> None:
    with pytest.raises(ConfigError, match="on_bad_audio"):
        BadFiles("ignore")
    bad = BadFiles("skip")
    bad.report("x.wav", "broken")
    assert bad.as_meta() == {"skipped": [{"path": "x.wav", "reason": "broken"}]}
    with pytest.raises(AudioError, match="x.wav: broken"):
        BadFiles("error").report("x.wav", "broken")


def test_resolve_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as exc:
        resolve_corpus(f"librispeek:{tmp_path}")
    for name in ("fluent", "librispeech", "speechcommands", "timit", "voxceleb1"):
        assert name in str(exc.value)
    with pytest.raises(CorpusError, match="does not exist"):
        resolve_corpus(f"timit:{tmp_path / 'missing'}")


# -- LibriSpeech ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def libri(tmp_path_factory: pytest.TempPathFactory) -> fab.Fabricated:
    return fab.make_librispeech(tmp_path_factory.mktemp("libri"))


def test_librispeech_manifest(libri: fab.Fabricated) -> None:
    m = resolve_corpus(f"librispeech:{libri.root / 'dev-clean'}")
    assert len(m) == 60 == len(libri.utts)
    assert len(m.speakers()) == 10
    assert m.phone_set == ARPABET_PHONES and len(m.phone_set) == 40 and m.phone_set[-1] == "sil"
    assert _speaker_disjoint(m)
    per_split = Counter(next(u.split for u in m if u.speaker == s) for s in m.speakers())
    assert per_split == {"train": 8, "dev": 1, "test": 1}
    for u in m:
        truth = libri.utts[u.utt_id]
        assert u.speaker == truth["speaker"] and u.text == truth["text"]
        assert u.duration_s == pytest.approx(truth["duration_s"])
        assert m.audio_path(u).is_file()
        assert [p for p, _, _ in u.phones] == truth["phones"]
        assert [w for w, _, _ in u.words] == truth["words"]
        assert u.phones[0][1] == 0.0 and u.phones[-1][2] == pytest.approx(u.duration_s)
        assert all(a < b for _, a, b in u.phones)
        assert u.sid_split in ("train", "dev", "test")
    # every speaker has 6 utterances: sid_split gives each speaker all three splits
    for s in m.speakers():
        assert Counter(u.sid_split for u in m if u.speaker == s) == {"train": 4, "dev": 1, "test": 1}
    assert m.meta["aligned_utterances"] == 60
    # same input, same manifest
    assert resolve_corpus(f"librispeech:{libri.root / 'dev-clean'}").content_hash() == m.content_hash()


def test_librispeech_spn_and_sp_fold_to_one_sil(libri: fab.Fabricated) -> None:
    m = resolve_corpus(f"librispeech:{libri.root / 'dev-clean'}")
    u = next(u for u in m if u.text == "DARK ZORB WORLD")
    # DARK, then sp + spn(ZORB) merged into one sil, then WORLD
    assert [p for p, _, _ in u.phones] == ["sil", "d", "aa", "r", "k", "sil", "w", "er", "l", "d", "sil"]
    assert "zorb" in [w for w, _, _ in u.words]


def test_librispeech_official_subsets(tmp_path: Path) -> None:
    subsets = {"train-clean-100": ["19", "26", "27"], "dev-clean": ["84"], "test-clean": ["61", "121"]}
    f = fab.make_librispeech(tmp_path, subsets=subsets, chapters_per_speaker=1, utts_per_chapter=2, alignments=None)
    pooled = resolve_corpus(f"librispeech:{f.root}")
    assert len(pooled) == 12 and pooled.meta["split_policy"] == "speaker-hash"
    assert all(u.phones == () for u in pooled)
    m = librispeech_corpus(
        f.root, subsets={"train": "train-clean-100", "dev": ["dev-clean"], "test": "test-clean"}
    )
    want = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test"}
    for u in m:
        assert u.split == want[f.utts[u.utt_id]["subset"]]
        assert u.path.startswith(f.utts[u.utt_id]["subset"] + "/")
        assert m.audio_path(u).is_file()
    only_dev = librispeech_corpus(f.root, subsets={"dev": "dev-clean"})
    assert {u.speaker for u in only_dev} == {"84"}
    with pytest.raises(CorpusError, match="subset 'dev-other' not found; subsets on disk: dev-clean"):
        librispeech_corpus(f.root, subsets={"dev": "dev-other"})


def test_librispeech_fold_to_timit39(libri: fab.Fabricated) -> None:
    m = librispeech_corpus(libri.root / "dev-clean", fold_to_timit39=True)
    assert m.phone_set == TIMIT39
    seen = {p for u in m for p, _, _ in u.phones}
    assert "ao" not in seen and "aa" in seen and seen <= set(TIMIT39)


def test_textgrid_formats_agree(tmp_path: Path) -> None:
    tiers, _ = fab.mfa_tiers('HELLO WORLD', 1.2)
    tiers["words"][1] = ('say "hi"', *tiers["words"][1][1:])  # a quote inside a label
    fab.write_textgrid(tmp_path / "long.TextGrid", tiers, 1.2)
    fab.write_textgrid(tmp_path / "short.TextGrid", tiers, 1.2, short=True)
    fab.write_textgrid(tmp_path / "u16.TextGrid", tiers, 1.2, encoding="utf-16")
    long_ = read_textgrid(tmp_path / "long.TextGrid")
    assert long_ == read_textgrid(tmp_path / "short.TextGrid") == read_textgrid(tmp_path / "u16.TextGrid")
    assert long_["words"][1][0] == 'say "hi"'
    assert long_["phones"][1] == ("HH", pytest.approx(1.2 / 11), pytest.approx(2 * 1.2 / 11))
    assert len(long_["phones"]) == len(tiers["phones"])


def test_textgrid_point_tier_and_speaker_prefixed_tiers(tmp_path: Path) -> None:
    text = "\n".join([
        'File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "1.0", "<exists>", "2",
        '"TextTier"', '"events"', "0", "1.0", "2", "0.25", '"click"', "0.5", '"12 3"',
        '"IntervalTier"', '"84 - phones"', "0", "1.0", "3",
        "0", "0.3", '""', "0.3", "0.7", '"AH1"', "0.7", "1.0", '"spn"',
    ])  # fmt: skip
    p = tmp_path / "x.TextGrid"
    p.write_text(text)
    assert read_textgrid(p) == {"84 - phones": [("", 0.0, 0.3), ("AH1", 0.3, 0.7), ("spn", 0.7, 1.0)]}
    phones, words = textgrid_alignment(p, 1.0)
    assert phones == (("sil", 0.0, 0.3), ("ah", 0.3, 0.7), ("sil", 0.7, 1.0)) and words == ()


def test_arpabet_mapping() -> None:
    assert [arpabet_to_phone(x) for x in ("AH0", "ER1", "zh", "sp", "SIL", "spn", "", "NG")] == [
        "ah", "er", "zh", "sil", "sil", "sil", "sil", "ng",
    ]  # fmt: skip
    assert arpabet_to_phone("ə") is None and arpabet_to_phone("DX") is None


def test_textgrid_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.TextGrid"
    bad.write_text('File type = "ooTextFile"\nObject class = "Pitch 1"\n')
    with pytest.raises(CorpusError, match=r"bad.TextGrid: not a Praat text TextGrid \(expected \"TextGrid\""):
        read_textgrid(bad)
    ipa = tmp_path / "ipa.TextGrid"
    fab.write_textgrid(ipa, {"phones": [("", 0.0, 0.2), ("ə", 0.2, 0.5)]}, 0.5)
    with pytest.raises(CorpusError, match="ipa.TextGrid: phone 'ə' is not ARPAbet"):
        textgrid_alignment(ipa)
    with pytest.raises(CorpusError, match="audio lasts 0.900 s"):
        textgrid_alignment(_ok_grid(tmp_path), 0.9)
    no_tier = tmp_path / "words.TextGrid"
    fab.write_textgrid(no_tier, {"words": [("a", 0.0, 0.5)]}, 0.5)
    with pytest.raises(CorpusError, match="no 'phones' tier"):
        textgrid_alignment(no_tier)


def _ok_grid(tmp_path: Path) -> Path:
    p = tmp_path / "ok.TextGrid"
    fab.write_textgrid(p, {"phones": [("", 0.0, 0.2), ("AA1", 0.2, 0.5)]}, 0.5)
    return p


def test_librispeech_broken_transcript_and_audio(tmp_path: Path) -> None:
    f = fab.make_librispeech(tmp_path, subsets={"dev-clean": ["84", "174", "251"]}, chapters_per_speaker=1,
                             utts_per_chapter=3, alignments="beside", short_textgrids=True)  # fmt: skip
    sub = f.root / "dev-clean"
    m = resolve_corpus(f"librispeech:{sub}")
    assert len(m) == 9 and all(u.phones for u in m)  # TextGrids beside the audio, short format
    trans = next(sub.glob("84/*/*.trans.txt"))
    good = trans.read_text()
    lines = good.splitlines()
    trans.write_text("\n".join([lines[0], "84-BAD-0001 HELLO", *lines[2:]]) + "\n")
    with pytest.raises(CorpusError) as exc:
        resolve_corpus(f"librispeech:{sub}")
    assert f"{trans}:2: expected" in str(exc.value) and "84-BAD-0001" in str(exc.value)
    trans.write_text("\n".join([lines[0], lines[1].split()[0], *lines[2:]]) + "\n")
    with pytest.raises(CorpusError, match=r"trans.txt:2: expected '84-\d+-NNNN TRANSCRIPT'"):
        resolve_corpus(f"librispeech:{sub}")
    trans.unlink()
    with pytest.raises(CorpusError, match="missing .*84-.*trans.txt; expected the transcript of chapter"):
        resolve_corpus(f"librispeech:{sub}")
    trans.write_text(good)
    flac = next(sub.glob("174/*/*.flac"))
    flac.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match=f"{flac.name}: cannot read the audio header"):
        resolve_corpus(f"librispeech:{sub}")
    skipped = librispeech_corpus(sub, on_bad_audio="skip")
    assert len(skipped) == 8
    assert skipped.meta["skipped"][0]["path"] == str(flac)


def test_librispeech_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="holds no SPK/CHAP folders; expected a LibriSpeech subset"):
        resolve_corpus(f"librispeech:{tmp_path / 'empty'}")


# -- VoxCeleb1 --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vox(tmp_path_factory: pytest.TempPathFactory) -> fab.Fabricated:
    return fab.make_voxceleb1(tmp_path_factory.mktemp("vox"))


def test_voxceleb1_manifest(vox: fab.Fabricated) -> None:
    m = resolve_corpus(f"voxceleb1:{vox.root}")
    assert len(m) == 52 and len(m.speakers()) == 13
    assert {u.utt_id: u.sid_split for u in m} == vox.extra["iden"]
    for u in m:
        assert u.speaker == vox.utts[u.utt_id]["speaker"] == u.utt_id.split("/")[0]
        assert u.duration_s == pytest.approx(vox.utts[u.utt_id]["duration_s"])
        assert m.audio_path(u).is_file()
    assert [(t.utt_a, t.utt_b, t.target) for t in m.trials] == vox.extra["trials"]
    assert sum(t.target for t in m.trials) == 9 and len(m.trials) == 15
    assert _speaker_disjoint(m)
    test_spk = {u.speaker for u in m if u.split == "test"}
    assert test_spk == set(vox.extra["test_speakers"])
    dev_splits = Counter(next(u.split for u in m if u.speaker == s) for s in vox.extra["dev_speakers"])
    assert dev_splits == {"train": 9, "dev": 1}
    assert m.meta["trial_file"].endswith("veri_test2.txt")


def test_voxceleb1_partial_copy_and_fallbacks(tmp_path: Path) -> None:
    f = fab.make_voxceleb1(tmp_path, dev_speakers=3, test_speakers=2, trial_file="veri_test.txt")
    shutil.rmtree(tmp_path / "wav" / "id10001")  # listed in iden_split but gone
    m = resolve_corpus(f"voxceleb1:{tmp_path}")
    assert len(m) == 16 and m.meta["listed_missing"] == 4
    assert m.meta["trial_file"].endswith("veri_test.txt")
    (tmp_path / "iden_split.txt").unlink()
    m2 = resolve_corpus(f"voxceleb1:{tmp_path}")
    assert m2.meta["sid_split_policy"] == "utterance-hash"
    for s in m2.speakers():
        assert {u.sid_split for u in m2 if u.speaker == s} == {"train", "dev", "test"}
    (tmp_path / "veri_test.txt").unlink()
    with pytest.raises(CorpusError, match="iden_split.txt and .*veri_test2.txt; expected at least one"):
        resolve_corpus(f"voxceleb1:{tmp_path}")
    assert len(f.utts) == 20


def test_voxceleb1_malformed_lists(tmp_path: Path) -> None:
    fab.make_voxceleb1(tmp_path, dev_speakers=2, test_speakers=2)
    iden = tmp_path / "iden_split.txt"
    lines = iden.read_text().splitlines()
    iden.write_text("\n".join([*lines[:4], "4 id10001/vid/00001.wav", *lines[5:]]) + "\n")
    with pytest.raises(CorpusError) as exc:
        resolve_corpus(f"voxceleb1:{tmp_path}")
    assert f"{iden}:5: expected '<1|2|3> idXXXXX/VIDEO/NNNNN.wav'" in str(exc.value)
    iden.write_text("\n".join([*lines[:2], "1 id10001/x.wav", *lines[3:]]) + "\n")
    with pytest.raises(CorpusError, match="iden_split.txt:3: expected"):
        resolve_corpus(f"voxceleb1:{tmp_path}")
    iden.write_text("\n".join(lines) + "\n")
    trials = tmp_path / "veri_test2.txt"
    trials.write_text("1 id10270/a/00001.wav\n")
    with pytest.raises(CorpusError, match=r"veri_test2.txt:1: expected '<0\|1> idXXXXX"):
        resolve_corpus(f"voxceleb1:{tmp_path}")
    with pytest.raises(CorpusError, match="missing .*list_test_hard2.txt; expected a VoxCeleb1 trial list"):
        voxceleb1_corpus(tmp_path, trials="list_test_hard2.txt")


# -- Speech Commands --------------------------------------------------------------------------
@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPWIDE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_silence_windows() -> None:
    w = silence_windows(12.4)
    assert Counter(s for s, _ in w) == {"train": 10, "dev": 1, "test": 1}
    assert [t for _, t in w] == [float(i) for i in range(12)]
    half = silence_windows(10.5, hop_s=0.5)
    # regions [0, 8), [8, 9), [9, 10): windows never straddle a region boundary
    assert Counter(s for s, _ in half) == {"train": 15, "dev": 1, "test": 1}
    assert max(t for s, t in half if s == "train") == 7.0
    assert [t for s, t in half if s != "train"] == [8.0, 9.0]


def test_speechcommands_manifest(tmp_path: Path, cache: Path) -> None:
    f = fab.make_speechcommands(tmp_path / "sc")
    m = resolve_corpus(f"speechcommands:{f.root}")
    words = [u for u in m if u.keyword != "_silence_"]
    assert len(words) == 7 * 12 == len(f.utts)
    for u in words:
        truth = f.utts[u.utt_id]
        assert u.speaker == truth["speaker"] and u.split == truth["split"] and u.text == truth["word"]
        assert u.duration_s == pytest.approx(truth["duration_s"])
        expected = truth["word"] if truth["word"] in ("yes", "no", "left", "go") else "_unknown_"
        assert u.keyword == expected
    assert m.label_sets()["keyword"] == sorted(["yes", "no", "left", "go", "_unknown_", "_silence_"])
    assert Counter(u.keyword for u in words)["_unknown_"] == 3 * 12
    assert _speaker_disjoint(m)
    sil = [u for u in m if u.keyword == "_silence_"]
    # white_noise 12 s → 10/1/1 windows; running_tap 10.5 s → 8/1/1
    assert len(sil) == 22
    assert Counter(u.split for u in sil) == {"train": 18, "dev": 2, "test": 2}
    assert all(str(cache) in u.path for u in sil)
    assert m.meta["version"] == "v2"
    # a silence clip is the exact 1-s slice of its noise file
    u = next(u for u in sil if u.utt_id == "_silence_/white_noise_0003000")
    clip, sr = sf.read(u.path, dtype="int16")
    noise, _ = sf.read(str(f.root / "_background_noise_" / "white_noise.wav"), dtype="int16")
    assert sr == 16000 and len(clip) == 16000
    np.testing.assert_array_equal(clip, noise[3 * 16000 : 4 * 16000])
    assert u.split == "train" and u.speaker == "noise-white_noise-train"
    again = resolve_corpus(f"speechcommands:{f.root}")
    assert again.content_hash() == m.content_hash()


def test_speechcommands_errors(tmp_path: Path, cache: Path) -> None:
    f = fab.make_speechcommands(tmp_path / "sc", words=("yes", "bed"), speakers=6, noise_seconds=())
    m = resolve_corpus(f"speechcommands:{f.root}")
    assert len(m) == 12 and all(u.keyword != "_silence_" for u in m)
    val = f.root / "validation_list.txt"
    val.write_text(val.read_text() + "yes 01.wav\n")
    with pytest.raises(CorpusError) as exc:
        resolve_corpus(f"speechcommands:{f.root}")
    assert f"{val}:5: expected 'WORD/SPEAKER_nohash_N.wav'" in str(exc.value)
    val.write_text("yes/ghost_nohash_0.wav\n")
    with pytest.raises(CorpusError, match="ghost_nohash_0.wav: listed in validation_list.txt"):
        resolve_corpus(f"speechcommands:{f.root}")
    skipped = speechcommands_corpus(f.root, on_bad_audio="skip")
    assert len(skipped.meta["skipped"]) == 1
    (f.root / "testing_list.txt").unlink()
    with pytest.raises(CorpusError, match="missing .*testing_list.txt; expected Speech Commands' testing_list.txt"):
        resolve_corpus(f"speechcommands:{f.root}")


def test_speechcommands_superb_test_archive(tmp_path: Path) -> None:
    root = tmp_path / "speech_commands_test_set_v0.01"
    for folder, n in (("yes", 2), ("_unknown_", 3), ("_silence_", 2)):
        for i in range(n):
            fab.write_audio(root / folder / f"ab{i}cd_nohash_{i}.wav", 16000, seed=i)
    m = resolve_corpus(f"speechcommands:{root}")
    assert len(m) == 7 and {u.split for u in m} == {"test"}
    assert Counter(u.keyword for u in m) == {"yes": 2, "_unknown_": 3, "_silence_": 2}


# -- Fluent Speech Commands -------------------------------------------------------------------
def test_fluent_manifest(tmp_path: Path) -> None:
    f = fab.make_fluent(tmp_path / "fsc")
    m = resolve_corpus(f"fluent:{f.root}")
    assert len(m) == 24 == len(f.utts)
    for u in m:
        truth = f.utts[u.utt_id]
        assert (u.speaker, u.split, u.text, u.intent) == (truth["speaker"], truth["split"], truth["text"], truth["intent"])
        assert u.kind == "command" and m.audio_path(u).is_file()
        assert u.duration_s == pytest.approx(truth["duration_s"])
    assert Counter(u.split for u in m) == {"train": 12, "dev": 6, "test": 6}
    assert _speaker_disjoint(m)
    assert "increase_heat_kitchen" in m.label_sets()["intent"]
    via_data = resolve_corpus(f"fluent:{f.root / 'data'}")
    assert via_data.root == f.root and len(via_data) == 24


def test_fluent_errors(tmp_path: Path) -> None:
    f = fab.make_fluent(tmp_path / "fsc", speakers=(1, 1, 1), utts_per_speaker=2)
    valid = f.root / "data" / "valid_data.csv"
    lines = valid.read_text().splitlines()
    valid.write_text("\n".join([lines[0], lines[1], lines[2].rsplit(",", 1)[0] + ",", *lines[3:]]) + "\n")
    with pytest.raises(CorpusError, match=r"valid_data.csv:3: expected 7 comma-separated fields"):
        resolve_corpus(f"fluent:{f.root}")
    valid.write_text("\n".join([",path,speakerId,transcription,action,object", *lines[1:]]) + "\n")
    with pytest.raises(CorpusError, match="valid_data.csv:1: header lacks location; expected a header"):
        resolve_corpus(f"fluent:{f.root}")
    valid.unlink()
    with pytest.raises(CorpusError, match="missing .*valid_data.csv; expected Fluent Speech Commands"):
        resolve_corpus(f"fluent:{f.root}")


# -- TIMIT ------------------------------------------------------------------------------------
def test_timit_phone_tables() -> None:
    assert len(TIMIT61) == 61 == len(FOLD_61_TO_39)
    assert len(TIMIT39) == 39 and TIMIT39[-1] == "sil"
    assert {v for v in FOLD_61_TO_39.values() if v is not None} == set(TIMIT39)
    assert [fold_phone(p) for p in ("ao", "ax-h", "axr", "hv", "ix", "el", "em", "nx", "eng", "zh", "ux")] == [
        "aa", "ah", "er", "hh", "ih", "l", "m", "n", "ng", "sh", "uw",
    ]  # fmt: skip
    assert {fold_phone(p) for p in ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "pau", "epi", "h#")} == {"sil"}
    assert fold_phone("q") is None and fold_phone("dx") == "dx"
    assert len(CORE_TEST_SPEAKERS) == 24 and len(DEV_SPEAKERS) == 50
    assert not CORE_TEST_SPEAKERS & DEV_SPEAKERS
    assert Counter(s[0] for s in CORE_TEST_SPEAKERS) == {"m": 16, "f": 8}


def test_timit_phone_set_matches_synth() -> None:
    phones = pytest.importorskip("deepwide.corpora.phones")
    assert phones.PHONE_SET == TIMIT39


def test_timit_manifest(tmp_path: Path) -> None:
    f = fab.make_timit(tmp_path)
    m = resolve_corpus(f"timit:{f.root}")
    assert m.phone_set == TIMIT39
    by_spk = Counter(u.speaker for u in m)
    assert by_spk == {"fcjf0": 2, "mrtr0": 2, "mdab0": 2, "faks0": 2}  # SA left out, mzzz0 not core/dev
    split = {u.speaker: u.split for u in m}
    assert split == {"fcjf0": "train", "mrtr0": "train", "mdab0": "test", "faks0": "dev"}
    assert m.meta["excluded_speakers"] == ["mzzz0"]
    u = m.by_id()["fcjf0_si1027"]
    s = 800 / 16000
    # h# q ao l ax-h pau en zh epi ux h#  →  q deleted, the rest folded
    assert u.phones == (
        ("sil", 0 / 20, 1 / 20), ("aa", 2 / 20, 3 / 20), ("l", 3 / 20, 4 / 20), ("ah", 4 / 20, 5 / 20),
        ("sil", 5 / 20, 6 / 20), ("n", 6 / 20, 7 / 20), ("sh", 7 / 20, 8 / 20), ("sil", 8 / 20, 9 / 20),
        ("uw", 9 / 20, 10 / 20), ("sil", 10 / 20, 11 / 20),
    )  # fmt: skip
    assert [p for p, _, _ in m.by_id()["mdab0_sx127"].phones] == ["sil", "sil", "b", "er", "l", "n", "m", "ng", "sil", "k", "sil"]
    assert u.duration_s == pytest.approx(11 * s)
    assert u.text == f.utts["fcjf0_si1027"]["text"]
    assert list(u.words) == f.utts["fcjf0_si1027"]["words"]
    assert u.path == "TRAIN/DR1/FCJF0/SI1027.WAV" and m.audio_path(u).is_file()
    wav, sr = sf.read(str(m.audio_path(u)), dtype="int16")
    assert sr == 16000 and len(wav) == 11 * 800

    complete = timit_corpus(f.root, test_set="complete", include_sa=True)
    assert Counter(u.speaker for u in complete)["mzzz0"] == 3
    assert {u.split for u in complete if u.speaker == "mzzz0"} == {"test"}
    assert [p for p, _, _ in complete.by_id()["fcjf0_sa1"].phones] == ["sil", "sh", "ih", "hh", "eh", "sil", "jh", "ih", "sil"]
    for spk in complete.speakers():
        assert {u.sid_split for u in complete if u.speaker == spk} == {"train", "dev", "test"}


def test_timit_lower_case_and_hash_fallback(tmp_path: Path) -> None:
    f = fab.make_timit(tmp_path, speakers={"TRAIN/DR1": ["FAAA0"], "TEST/DR3": ["MXXX0", "MYYY0", "FZZZ0", "MWWW0"]},
                       lower_case=True)  # fmt: skip
    m = resolve_corpus(f"timit:{f.root}")
    assert m.meta["split_policy"] == "speaker-hash"
    assert _speaker_disjoint(m)
    assert Counter(u.split for u in m if u.speaker != "faaa0") == {"dev": 4, "test": 4}
    assert m.by_id()["mxxx0_si1027"].path == "test/dr3/mxxx0/si1027.wav"


def test_timit_errors(tmp_path: Path) -> None:
    f = fab.make_timit(tmp_path, speakers={"TRAIN/DR1": ["FCJF0"], "TEST/DR1": ["MDAB0"]})
    phn = f.root / "TRAIN" / "DR1" / "FCJF0" / "SX127.PHN"
    lines = phn.read_text().splitlines()
    phn.write_text("\n".join([*lines[:2], "1600 2400 xx", *lines[3:]]) + "\n")
    with pytest.raises(CorpusError) as exc:
        resolve_corpus(f"timit:{f.root}")
    assert f"{phn}:3: expected one of TIMIT's 61 phone labels, got 'xx'" in str(exc.value)
    phn.write_text("\n".join([*lines[:2], "1600 b", *lines[3:]]) + "\n")
    with pytest.raises(CorpusError, match=r"SX127.PHN:3: expected '<start sample> <end sample> <label>'"):
        resolve_corpus(f"timit:{f.root}")
    phn.unlink()
    with pytest.raises(CorpusError, match=r"SX127.WAV: no .PHN phone file beside it"):
        resolve_corpus(f"timit:{f.root}")
    assert len(timit_corpus(f.root, on_bad_audio="skip")) == 3
    with pytest.raises(CorpusError, match="has no TRAIN/ or TEST/ folder"):
        resolve_corpus(f"timit:{f.root / 'TRAIN' / 'DR1'}")
    with pytest.raises(ConfigError, match="test_set='all'"):
        timit_corpus(f.root, test_set="all")
