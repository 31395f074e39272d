"""Tests of the embedded synthetic corpus: espeak driver, phone set, generator, adapter, CLI,
and the reference baselines."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.corpora import resolve_corpus
from deepwide.corpora.espeak import get_engine
from deepwide.corpora.manifest import Manifest, Utterance
from deepwide.corpora.phones import ESPEAK_TO_PHONE, PHONE_SET, map_espeak_phone, merge_segments
from deepwide.corpora.synth import (
    INTENTS,
    KEYWORD_CLASSES,
    UNKNOWN_WORDS,
    SynthConfig,
    generate_synth,
    make_sentence,
    plan_speakers,
    plan_utterances,
    render_utterance,
)
from deepwide.errors import ConfigError, CorpusError

SR = 16_000
TINY = SynthConfig(n_speakers=8, utts_per_speaker=6)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The 8-speaker corpus of the issue's acceptance check, generated once via the CLI."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    res = CliRunner().invoke(
        cli, ["--seed", "3", "corpus", "synth", "--out", str(out), "--speakers", "8",
              "--utts-per-speaker", "6", "--workers", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "48 utterances" in res.output and "8 speakers" in res.output
    return Manifest.load(out)


# -- espeak driver and phone set ---------------------------------------------------------------
def test_engine_output_is_independent_of_history() -> None:
    eng = get_engine()
    text = "Hello world, the boat goes home."
    a = eng.synthesize(text, voice="en-us+m3", rate=170)
    eng.synthesize("Something else, spoken faster.", voice="en-us+f2", rate=300, pitch=80)
    b = eng.synthesize(text, voice="en-us+m3", rate=170)
    assert a.sample_rate == 22050
    assert np.array_equal(a.wav, b.wav) and a.phones == b.phones
    # segments are contiguous, ordered and end at the last sample
    for (_, _, e1), (_, s2, _) in zip(a.phones, a.phones[1:], strict=False):
        assert e1 == s2
    assert a.phones[-1][2] == len(a.wav)
    assert [w for w, _, _ in a.words] == ["hello", "world", "the", "boat", "goes", "home"]
    assert [w for w, _, _ in eng.synthesize("in front of the box").words][-2:] == ["of the", "box"]
    with pytest.raises(CorpusError, match="no voice"):
        eng.synthesize(text, voice="xx-nonexistent")


def test_voice_definitions() -> None:
    from deepwide.corpora.espeak import voice_file_text

    eng = get_engine()
    text = "The boat goes home."
    named = eng.synthesize(text, voice="en-us+m3")
    same = eng.synthesize(text, voice_definition=voice_file_text("en-us", "m3"))
    assert np.array_equal(named.wav, same.wav)  # language + variant lines == en-us+m3
    shifted = voice_file_text("en-us", "m3", {1: (1.2, 1.0, 1.0), 2: (1.15, 1.0, 1.0)})
    assert "formant 1 115 97 100" in shifted  # m3's F1 is 96 %: 96 × 1.2
    other = eng.synthesize(text, voice_definition=shifted)
    assert other.phones == named.phones and not np.array_equal(other.wav, named.wav)
    with pytest.raises(CorpusError, match="variant"):
        voice_file_text("en-us", "no-such-variant")
    with pytest.raises(CorpusError, match="language"):
        voice_file_text("xx-yy", "m3")


def test_phone_set_and_mapping() -> None:
    assert len(PHONE_SET) == 39 and PHONE_SET[-1] == "sil"
    assert map_espeak_phone("'oU") == "ow"
    assert map_espeak_phone(",aI") == "ay"
    assert map_espeak_phone("t#") == "dx"
    assert map_espeak_phone("_:") == map_espeak_phone("_") == map_espeak_phone("") == "sil"
    assert map_espeak_phone("Z") == map_espeak_phone("S") == "sh"  # TIMIT folding zh → sh
    with pytest.raises(KeyError):
        map_espeak_phone("Q9")
    assert merge_segments([("sil", 0, 5), ("sil", 5, 9), ("d", 9, 12), ("d", 12, 15)]) == [
        ("sil", 0, 9), ("d", 9, 12), ("d", 12, 15)]


def test_every_generator_word_maps_onto_the_phone_set() -> None:
    from deepwide.corpora.synth import texts as s

    words: set[str] = set(UNKNOWN_WORDS) | set(s.KEYWORDS)
    for group in (s._NAMES, s._NOUNS, s._ADJS, s._PAST, s._BASE, s._PLACES, s._ADVS, s._NUMS):
        words |= {w.lower() for w in group}
    for phrase in (*s._TIMES, *s._PREPS, *(p for ps in s.COMMAND_PHRASES.values() for p in ps)):
        words |= set(phrase.lower().split())
    words |= {s._plural(n) for n in s._NOUNS}
    ordered = sorted(words)
    eng = get_engine()
    seen: set[str] = set()
    for i in range(0, len(ordered), 40):
        out = eng.synthesize(" ".join(ordered[i : i + 40]) + ".", voice="en-us")
        for label, _, _ in out.phones:
            seen.add(map_espeak_phone(label))  # raises KeyError on a gap in the table
    assert seen <= set(PHONE_SET)
    assert len(seen) >= 36  # the word lists exercise nearly the whole set
    assert set(ESPEAK_TO_PHONE.values()) <= set(PHONE_SET)


# -- generator ---------------------------------------------------------------------------------
def test_acceptance_tiny_corpus(tiny: Manifest) -> None:
    assert len(tiny.speakers()) == 8
    assert {u.kind for u in tiny} == {"sentence", "keyword", "command"}
    assert all(u.phones for u in tiny) and tiny.phone_set == PHONE_SET
    assert tiny.trials and any(t.target for t in tiny.trials) and not all(t.target for t in tiny.trials)
    for u in tiny:
        info = sf.info(str(tiny.audio_path(u)))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == round(u.duration_s * SR)
        # phone segments tile [0, duration] exactly, on the phone set
        assert u.phones[0][1] == 0.0 and u.phones[-1][2] == pytest.approx(u.duration_s)
        for (_, _, e1), (_, s2, _) in zip(u.phones, u.phones[1:], strict=False):
            assert e1 == s2
        assert {p for p, _, _ in u.phones} <= set(PHONE_SET)
        assert all(0 <= a < b <= u.duration_s + 1e-9 for _, a, b in u.words)


def test_labels_per_kind(tiny: Manifest) -> None:
    for u in tiny:
        if u.kind == "keyword":
            assert u.keyword in KEYWORD_CLASSES and u.duration_s >= 1.0 and u.intent is None
            if u.keyword == "_silence_":
                assert u.text is None and [p for p, _, _ in u.phones] == ["sil"]
            elif u.keyword == "_unknown_":
                assert u.text in UNKNOWN_WORDS
            else:
                assert u.text == u.keyword and [w for w, _, _ in u.words] == [u.keyword]
        elif u.kind == "command":
            assert u.intent in INTENTS and len(u.intent.split("_")) == 3 and u.keyword is None
        else:
            assert u.text and u.keyword is None and u.intent is None
            tokens = [t.strip(",.?!").lower() for t in u.text.split()]
            # espeak speaks some pairs as one word ("of the"): same words, maybe fewer segments
            assert " ".join(w for w, _, _ in u.words).split() == tokens


def test_splits_and_trials(tiny: Manifest) -> None:
    by_spk: dict[str, set[str]] = {}
    for u in tiny:
        by_spk.setdefault(u.speaker, set()).add(u.split)
    assert all(len(s) == 1 for s in by_spk.values())  # content split is speaker-disjoint
    spk_split = {k: next(iter(v)) for k, v in by_spk.items()}
    assert sorted(spk_split.values()).count("test") >= 2 and "dev" in spk_split.values()
    for u in tiny:
        assert (u.sid_split is not None) == (u.kind == "sentence")
    for spk in tiny.speakers():
        sid = {u.sid_split for u in tiny if u.speaker == spk and u.sid_split}
        assert {"train", "test"} <= sid  # every speaker is in speaker ID with train and test
    by_id = tiny.by_id()
    pairs = set()
    for t in tiny.trials:
        a, b = by_id[t.utt_a], by_id[t.utt_b]
        assert a.split == b.split == "test" and a.kind == b.kind == "sentence"
        assert t.target == (a.speaker == b.speaker) and a.utt_id != b.utt_id
        pairs.add((t.utt_a, t.utt_b))
    assert len(pairs) == len(tiny.trials)
    assert sum(t.target for t in tiny.trials) == len(tiny.trials) - sum(t.target for t in tiny.trials)


def test_same_seed_identical_files_any_worker_count(tiny: Manifest, tmp_path: Path) -> None:
    again = generate_synth(TINY, tmp_path / "again", seed=3, workers=2)
    assert _tree_digest(again.root) == _tree_digest(tiny.root)
    other = generate_synth(TINY, tmp_path / "other", seed=4, workers=1)
    assert other.content_hash() != again.content_hash()
    assert [u.text for u in other] != [u.text for u in again]


def test_speakers_are_stable_identities() -> None:
    cfg = SynthConfig(n_speakers=12, utts_per_speaker=4)
    spk = plan_speakers(cfg, seed=0)
    assert spk == plan_speakers(cfg, seed=0) and spk != plan_speakers(cfg, seed=1)
    plans = plan_utterances(cfg, spk, seed=0)
    for s in spk:
        mine = [p for p in plans if p.speaker == s.speaker_id]
        assert len(mine) == 4 and {(p.variant, p.formants) for p in mine} == {(s.variant, s.formants)}
        # per-utterance jitter stays around the speaker's own values
        assert all(abs(p.pitch - s.pitch) < 6 * cfg.pitch_jitter + 1e-9 for p in mine)
        assert all(abs(np.log(p.formant / s.formant)) < 6 * cfg.formant_jitter + 1e-9 for p in mine)
    variants = [s.variant for s in spk]
    assert 1 < len(set(variants)) < len(spk)  # many speakers share a variant …
    assert len({s.formants for s in spk}) == len(spk)  # … but each has its own vocal tract


def test_without_recording_keeps_voices_and_texts() -> None:
    """`corpus synth --clean`: the same speakers and utterances, only the recording is clean."""
    cfg = SynthConfig(n_speakers=6, utts_per_speaker=4)
    clean = cfg.without_recording()
    assert plan_speakers(clean, seed=2) == plan_speakers(cfg, seed=2)
    plans = plan_utterances(cfg, plan_speakers(cfg, 2), seed=2)
    clean_plans = plan_utterances(clean, plan_speakers(clean, 2), seed=2)
    keep = ("utt_id", "speaker", "text", "keyword", "pitch", "rate", "formant", "formants")
    for a, b in zip(plans, clean_plans, strict=True):
        assert all(getattr(a, k) == getattr(b, k) for k in keep)
        assert b.bands == () and b.snr_db == 90.0 and b.level_dbfs == -23.0
    assert len({p.level_dbfs for p in plans}) > 1 and any(p.bands for p in plans)


def _clean_plan(text: str, rate: float = 175.0, seed: int = 0):  # type: ignore[no-untyped-def]
    cfg = SynthConfig(n_speakers=4, utts_per_speaker=3)
    plan = plan_utterances(cfg, plan_speakers(cfg, seed), seed)[0]
    return dataclasses.replace(
        plan, text=text, rate=rate, pitch=50.0, pitch_range=50.0, formant=1.0, snr_db=80.0,
        bands=(), highpass_hz=60.0, lowpass_hz=7600.0, pad_lead_s=0.2, pad_trail_s=0.2,
        level_dbfs=-20.0,
    )


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_alignment_pauses_are_quiet_relative_to_phones() -> None:
    wav, r = render_utterance(_clean_plan("Stop. Yes, go left now."))
    assert len(wav) == r.n_samples
    sil = [(a, b) for p, a, b in r.phones if p == "sil" and b - a > 800]
    speech = np.concatenate([wav[a:b] for p, a, b in r.phones if p != "sil"])
    assert len(sil) >= 3  # leading pad, the pauses after "Stop." and "Yes,", trailing pad
    for a, b in sil:
        # pauses hold at most the decaying tail of the previous sound: trim 15 ms at the edges
        inner = wav[a + 240 : b - 240]
        assert _rms(inner) < 0.05 * _rms(speech), (a, b)
    # every vowel is loud: it carries energy well above the pauses
    for p, a, b in r.phones:
        if p in ("aa", "eh", "ow", "aw"):
            assert _rms(wav[a:b]) > 0.3 * _rms(speech)


def test_alignment_onsets_match_the_audio() -> None:
    wav, r = render_utterance(_clean_plan("Sam sat."))
    first = next(s for s in r.phones if s[0] != "sil")
    assert first[0] == "s"
    env = np.abs(wav.astype(np.float64))
    thr = 0.1 * env.max()
    onset = int(np.argmax(env > thr))
    assert first[1] - 160 <= onset <= first[2]  # the audio starts inside the first phone


def test_alignment_boundaries_move_with_rate() -> None:
    text = "Please bring the yellow basket to the station."
    _, slow = render_utterance(_clean_plan(text, rate=130.0))
    _, fast = render_utterance(_clean_plan(text, rate=260.0))
    seq = [p for p, _, _ in slow.phones if p != "sil"]
    assert seq == [p for p, _, _ in fast.phones if p != "sil"]
    speech_slow = sum(b - a for p, a, b in slow.phones if p != "sil")
    speech_fast = sum(b - a for p, a, b in fast.phones if p != "sil")
    assert 1.5 < speech_slow / speech_fast < 2.5
    ends_slow = [b for _, _, b in slow.words]
    ends_fast = [b for _, _, b in fast.words]
    assert all(f < s for f, s in zip(ends_fast[1:], ends_slow[1:], strict=True))


def test_formant_scale_shifts_the_spectrum_not_the_pitch_or_tempo() -> None:
    def centroid(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SR)
        return float((spec * f).sum() / spec.sum())

    text = "ahhhhhhhhhhhh"
    lo, r_lo = render_utterance(dataclasses.replace(_clean_plan(text), formant=0.9, pitch_range=0.0))
    hi, r_hi = render_utterance(dataclasses.replace(_clean_plan(text), formant=1.1, pitch_range=0.0))
    assert centroid(hi) / centroid(lo) == pytest.approx(1.1 / 0.9, rel=0.08)
    assert r_hi.n_samples == pytest.approx(r_lo.n_samples, rel=0.05)  # tempo compensated


def test_sentences_vary() -> None:
    rng = np.random.default_rng(0)
    sents = [make_sentence(rng) for _ in range(200)]
    assert len(set(sents)) > 190
    lengths = [len(s.split()) for s in sents]
    assert min(lengths) >= 4 and max(lengths) <= 14


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_speakers"):
        SynthConfig(n_speakers=3)
    with pytest.raises(ValueError, match="kind_fractions"):
        SynthConfig(kind_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="speaker_pitch"):
        SynthConfig(speaker_pitch=(70.0, 30.0))
    with pytest.raises(ValueError, match="audio_format"):
        SynthConfig(audio_format="mp3")
    from deepwide.config import config_from_dict

    with pytest.raises(ConfigError):
        config_from_dict(SynthConfig, {"n_speakers": 2})
    counts = SynthConfig(utts_per_speaker=24).kind_counts()
    assert sum(counts.values()) == 24 and min(counts.values()) >= 1
    assert SynthConfig(utts_per_speaker=3).kind_counts() == {"sentence": 1, "keyword": 1, "command": 1}


def test_out_dir_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(CorpusError, match="not empty"):
        generate_synth(TINY, tmp_path / "full", seed=0)


# -- default corpus, lock, adapter --------------------------------------------------------------
def test_default_corpus_generated_once_under_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepwide.corpora.synth import cache as s  # where ensure_synth_corpus looks its names up

    monkeypatch.setenv("DEEPWIDE_CACHE", str(tmp_path / "cache"))
    calls: list[int] = []
    real = s.generate_synth

    def slow_generate(config, out_dir, *, seed, workers):  # type: ignore[no-untyped-def]
        calls.append(seed)
        time.sleep(0.3)  # widen the race window
        return real(config, out_dir, seed=seed, workers=1)

    monkeypatch.setattr(s, "generate_synth", slow_generate)
    results: list[Manifest] = []
    threads = [threading.Thread(target=lambda: results.append(s.ensure_synth_corpus(TINY, seed=5)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [5]  # one generation, the other caller waited and loaded it
    assert len(results) == 2 and results[0].content_hash() == results[1].content_hash()
    expected = s.default_corpus_dir(TINY, 5)
    assert expected.parent == tmp_path / "cache" / "corpora"
    assert expected.name.startswith("synth-") and expected.name.endswith("-seed5")
    assert (expected / "manifest.jsonl").is_file()
    assert not [p for p in expected.parent.iterdir() if ".tmp-" in p.name]

    # `synth` (the registered adapter) with the default config → the cached copy
    monkeypatch.setattr(s, "SynthConfig", lambda: TINY)
    again = s.ensure_synth_corpus(seed=5)
    assert calls == [5] and again.content_hash() == results[0].content_hash()
    assert resolve_corpus("synth").corpus_id.endswith("-seed0")  # seed 0 generated on first use
    assert calls == [5, 0]


def test_adapter_spec_forms(tiny: Manifest, tmp_path: Path) -> None:
    by_name = resolve_corpus(f"synth:{tiny.root}")
    by_folder = resolve_corpus(str(tiny.root))
    assert by_name.content_hash() == by_folder.content_hash() == tiny.content_hash()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no synthetic corpus"):
        resolve_corpus(f"synth:{tmp_path / 'empty'}")


# -- CLI and baselines --------------------------------------------------------------------------
def test_cli_info_text(tiny: Manifest) -> None:
    res = CliRunner().invoke(cli, ["corpus", "info", str(tiny.root), "--no-baselines"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "speakers        8" in out and "utterances      48" in out
    assert "command" in out and "keyword" in out and "sentence" in out
    assert "39 phones" in out and "trials" in out and "\nbaseline " not in out


def test_cli_info_json_with_baselines(tiny: Manifest) -> None:
    res = CliRunner().invoke(cli, ["corpus", "info", str(tiny.root), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["speakers"] == 8 and d["utterances"] == 48
    assert set(d["kinds"]) == {"sentence", "keyword", "command"}
    assert d["trials"]["target"] > 0 and d["trials"]["nontarget"] > 0
    names = [b["name"] for b in d["baselines"]]  # on by default for synthetic corpora
    assert names == ["sid_mfcc_mean", "sid_logmel_mean", "phone_mfcc_frame"]
    for b in d["baselines"]:
        assert b["skipped"] is None and 0.0 <= b["accuracy"] <= 1.0 and b["n_test"] > 0
    assert d["baselines"][0]["n_classes"] == 8


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["corpus", "info", str(tmp_path / "missing")])
    assert res.exit_code == 2
    assert "unknown corpus" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(cli, ["corpus", "synth", "--out", str(tmp_path / "x"), "--speakers", "2"])
    assert res.exit_code == 2 and "--speakers" in res.output


def _tone_corpus(root: Path, *, speaker_signal: bool) -> Manifest:
    """Speakers = distinct hum frequencies (or none); phones = distinct tones per segment."""
    rng = np.random.default_rng(0)
    phone_freq = {"aa": 1500.0, "iy": 2500.0, "s": 4000.0}
    utts = []
    t = np.arange(SR) / SR
    for si in range(6):
        for j in range(8):
            hum = np.sin(2 * np.pi * (200 + 120 * si) * t) if speaker_signal else 0.0
            wav = 0.05 * rng.standard_normal(SR) + 0.3 * hum
            phones = []
            order = rng.permutation(3)
            for k, pi in enumerate(order):
                p = list(phone_freq)[pi]
                a, b = k * SR // 3, (k + 1) * SR // 3
                wav[a:b] += 0.5 * np.sin(2 * np.pi * phone_freq[p] * t[a:b])
                phones.append((p, a / SR, b / SR))
            uid = f"s{si}-{j}"
            sf.write(str(root / f"{uid}.wav"), (wav / 2).astype(np.float32), SR, subtype="PCM_16")
            utts.append(Utterance(
                utt_id=uid, path=f"{uid}.wav", speaker=f"s{si}",
                split="train" if j < 5 else "dev" if j < 6 else "test",
                duration_s=1.0, sid_split="train" if j < 5 else "dev" if j < 6 else "test",
                phones=tuple(phones),
            ))
    return Manifest("tones", root, utts, phone_set=("aa", "iy", "s"))


def test_baselines_see_planted_structure(tmp_path: Path) -> None:
    from deepwide.corpora.baselines import run_baselines

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_spk = {r.name: r for r in run_baselines(_tone_corpus(tmp_path / "a", speaker_signal=True))}
    no_spk = {r.name: r for r in run_baselines(_tone_corpus(tmp_path / "b", speaker_signal=False))}
    assert with_spk["sid_mfcc_mean"].accuracy == 1.0 and with_spk["sid_logmel_mean"].accuracy == 1.0
    assert no_spk["sid_logmel_mean"].accuracy <= 0.5  # chance is 1/6
    assert with_spk["phone_mfcc_frame"].accuracy > 0.9 and no_spk["phone_mfcc_frame"].accuracy > 0.9
    assert with_spk["sid_mfcc_mean"].n_classes == 6 and with_spk["phone_mfcc_frame"].n_classes == 3


def test_cli_info_baselines_off_by_default_for_other_corpora(tmp_path: Path) -> None:
    m = _tone_corpus(tmp_path, speaker_signal=True)
    m.save(tmp_path)
    res = CliRunner().invoke(cli, ["corpus", "info", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "speakers        6" in res.output and "\nbaseline " not in res.output
    res = CliRunner().invoke(cli, ["corpus", "info", str(tmp_path), "--baselines"])
    assert res.exit_code == 0, res.output
    assert "speaker ID, MFCC means: 100.0 %" in res.output


@pytest.mark.slow
def test_default_corpus_is_calibrated(tmp_path: Path) -> None:
    """The calibration claim of docs/corpus.md: SID from MFCC means 40–75 %, log-mel < 90 %."""
    from deepwide.corpora.baselines import run_baselines

    m = generate_synth(SynthConfig(), tmp_path / "default", seed=0, workers=2)
    hours = sum(u.duration_s for u in m) / 3600
    assert 0.5 < hours < 1.3
    r = {b.name: b.accuracy for b in run_baselines(m)}
    assert 0.40 <= r["sid_mfcc_mean"] <= 0.75
    assert r["sid_logmel_mean"] < 0.90
    assert 0.3 < r["phone_mfcc_frame"] < 0.9
