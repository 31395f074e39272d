"""Small fabricated copies of real corpus layouts, with synthetic audio, for adapter tests.

Each ``make_*`` function writes one corpus's on-disk layout (folder names, list files, label
files, audio containers) under ``root`` and returns a :class:`Fabricated` record of what it
wrote, so tests can compare an adapter's manifest against the truth. Audio is a short sine
plus seeded noise written with soundfile (FLAC/WAV), and TIMIT's NIST SPHERE files get a
hand-written 1024-byte header as on the LDC discs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

SR = 16_000


@dataclass
class Fabricated:
    """What a ``make_*`` function wrote.

    Attributes:
        root: the folder to hand to the adapter.
        utts: ``{utt_id: facts}`` — speaker, duration_s and labels as the adapter should see them.
        extra: corpus-specific facts (expected splits, trials, …).
    """

    root: Path
    utts: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# -- audio writers ----------------------------------------------------------------------------
def synth_wave(n_samples: int, *, freq: float = 220.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """A sine at ``freq`` plus seeded noise, float32 (S,) in about [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sr
    wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n_samples)
    return wav.astype(np.float32)


def write_audio(path: Path, n_samples: int, *, freq: float = 220.0, seed: int = 0, sr: int = SR) -> None:
    """Write a synthetic clip; the container follows the suffix (``.flac`` or ``.wav``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    sf.write(str(path), synth_wave(n_samples, freq=freq, seed=seed, sr=sr), sr, subtype="PCM_16", format=fmt)


def write_sphere(path: Path, samples: np.ndarray, *, sr: int = SR, utterance_id: str = "x") -> None:
    """Write 16-bit PCM as NIST SPHERE with a TIMIT-style header (little-endian, ``01``).

    Args:
        samples: int16 (S,).
    """
    x = np.asarray(samples, dtype="<i2")
    fields = [
        ("database_id", "-s5", "TIMIT"),
        ("database_version", "-s3", "1.0"),
        ("utterance_id", f"-s{len(utterance_id)}", utterance_id),
        ("channel_count", "-i", "1"),
        ("sample_count", "-i", str(len(x))),
        ("sample_rate", "-i", str(sr)),
        ("sample_min", "-i", str(int(x.min()))),
        ("sample_max", "-i", str(int(x.max()))),
        ("sample_n_bytes", "-i", "2"),
        ("sample_byte_format", "-s2", "01"),
        ("sample_sig_bits", "-i", "16"),
    ]
    head = "NIST_1A\n   1024\n" + "".join(f"{k} {t} {v}\n" for k, t, v in fields) + "end_head\n"
    blob = head.encode("ascii").ljust(1024, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob + x.tobytes())


def write_textgrid(
    path: Path,
    tiers: dict[str, list[tuple[str, float, float]]],
    xmax: float,
    *,
    short: bool = False,
    encoding: str = "utf-8",
) -> None:
    """Write a Praat TextGrid of interval tiers, in the long (MFA's) or short text format."""
    if short:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", f"{xmax}", "<exists>", str(len(tiers))]
        for name, segs in tiers.items():
            lines += ['"IntervalTier"', f'"{name}"', "0", f"{xmax}", str(len(segs))]
            for lab, a, b in segs:
                lines += [f"{a}", f"{b}", '"' + lab.replace('"', '""') + '"']
    else:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
                 "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]  # fmt: skip
        for i, (name, segs) in enumerate(tiers.items(), 1):
            lines += [f"    item [{i}]:", '        class = "IntervalTier" ', f'        name = "{name}" ',
                      "        xmin = 0 ", f"        xmax = {xmax} ", f"        intervals: size = {len(segs)} "]  # fmt: skip
            for j, (lab, a, b) in enumerate(segs, 1):
                text = lab.replace('"', '""')
                lines += [f"        intervals [{j}]:", f"            xmin = {a} ", f"            xmax = {b} ",
                          f'            text = "{text}" ']  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


# -- LibriSpeech ------------------------------------------------------------------------------
LEXICON = {
    "HELLO": ["HH", "AH0", "L", "OW1"],
    "WORLD": ["W", "ER1", "L", "D"],
    "SHE": ["SH", "IY1"],
    "HAD": ["HH", "AE1", "D"],
    "YOUR": ["Y", "AO1", "R"],
    "DARK": ["D", "AA1", "R", "K"],
}
SENTENCES = ("HELLO WORLD", "SHE HAD YOUR DARK", "DARK ZORB WORLD", "YOUR HELLO")


def mfa_tiers(text: str, duration_s: float) -> tuple[dict[str, list[tuple[str, float, float]]], list[str]]:
    """MFA-like word and phone tiers for ``text`` spread over ``duration_s``.

    Layout: leading silence (empty label), the words with an ``sp`` between words 1 and 2
    (if any), trailing silence, and an ``spn`` for an out-of-lexicon word.

    Returns:
        ``(tiers, expected_phone_labels)`` with the expected labels after folding (``sil`` for
        silences, adjacent silences merged), in order.
    """
    words = text.split()
    units: list[tuple[str, list[str]]] = []
    for w in words:
        units.append((w.lower(), LEXICON.get(w, ["spn"])))
    n_ph = sum(len(p) for _, p in units) + 2 + (1 if len(units) > 1 else 0)
    step = duration_s / n_ph
    t = 0.0
    phones: list[tuple[str, float, float]] = [("", 0.0, step)]
    wtier: list[tuple[str, float, float]] = [("", 0.0, step)]
    t = step
    for i, (w, ph) in enumerate(units):
        w0 = t
        for p in ph:
            phones.append((p, round(t, 6), round(t + step, 6)))
            t += step
        wtier.append((w, round(w0, 6), round(t, 6)))
        if i == 0 and len(units) > 1:
            phones.append(("sp", round(t, 6), round(t + step, 6)))
            wtier.append(("", round(t, 6), round(t + step, 6)))
            t += step
    phones.append(("", round(t, 6), duration_s))
    wtier.append(("", round(t, 6), duration_s))
    expected: list[str] = []
    for lab, _, _ in phones:
        low = lab.lower()
        ph = "sil" if low in ("", "sp", "sil", "spn") else low.rstrip("012")
        if not (ph == "sil" and expected and expected[-1] == "sil"):
            expected.append(ph)
    return {"words": wtier, "phones": phones}, expected


def make_librispeech(
    root: Path,
    *,
    subsets: dict[str, list[str]] | None = None,
    chapters_per_speaker: int = 2,
    utts_per_chapter: int = 3,
    alignments: str | None = "parallel",
    short_textgrids: bool = False,
) -> Fabricated:
    """Write ``root/LibriSpeech/SUBSET/SPK/CHAP/…`` with transcripts and FLAC audio.

    Args:
        subsets: ``{subset: [speaker ids]}``; default one ``dev-clean`` with 10 speakers.
        alignments: ``"parallel"`` writes MFA TextGrids to ``root/LibriSpeech/SUBSET-alignments``
            (the adapter's auto folder) as ``SPK/SPK-CHAP-UTT.TextGrid``; ``"beside"`` next to
            the audio; ``None`` writes none.

    Returns:
        ``root`` is the LibriSpeech folder; ``utts[utt_id]`` has speaker, subset, text,
        duration_s and (with alignments) the expected folded phone labels.
    """
    subsets = subsets or {"dev-clean": [str(s) for s in (84, 174, 251, 422, 652, 777, 1272, 1462, 1673, 1919)]}
    base = root / "LibriSpeech"
    fab = Fabricated(root=base)
    k = 0
    for sub, speakers in subsets.items():
        for spk in speakers:
            for c in range(chapters_per_speaker):
                chap = str(1000 + 7 * int(spk) % 900 + c)
                folder = base / sub / spk / chap
                lines = []
                for u in range(utts_per_chapter):
                    utt = f"{spk}-{chap}-{u:04d}"
                    text = SENTENCES[k % len(SENTENCES)]
                    n = 8000 + 800 * (k % 5)
                    write_audio(folder / f"{utt}.flac", n, freq=150 + 10 * (k % 20), seed=k)
                    lines.append(f"{utt} {text}")
                    dur = n / SR
                    facts: dict[str, Any] = dict(speaker=spk, subset=sub, text=text, duration_s=dur)
                    if alignments is not None:
                        tiers, expected = mfa_tiers(text, dur)
                        if alignments == "parallel":
                            tg = base / f"{sub}-alignments" / spk / f"{utt}.TextGrid"
                        else:
                            tg = folder / f"{utt}.TextGrid"
                        write_textgrid(tg, tiers, dur, short=short_textgrids)
                        facts["phones"] = expected
                        facts["words"] = [w.lower() for w in text.split()]
                    fab.utts[utt] = facts
                    k += 1
                (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return fab


# -- VoxCeleb1 --------------------------------------------------------------------------------
def make_voxceleb1(
    root: Path,
    *,
    dev_speakers: int = 10,
    test_speakers: int = 3,
    videos: int = 2,
    utts_per_video: int = 2,
    trial_file: str = "veri_test2.txt",
) -> Fabricated:
    """Write ``root/wav/idXXXXX/VIDEO/NNNNN.wav``, ``iden_split.txt`` and a trial list.

    Dev speakers are id10001…; test speakers id10270… (as in VoxCeleb1-O). In
    ``iden_split.txt`` each speaker's last utterance is 3 (test), the one before 2 (dev), the
    rest 1 (train). Trials pair each test speaker's first utterance with the speaker's
    other utterances (targets) and with the other test speakers' first ones (non-targets).

    Returns:
        ``extra``: ``iden`` ({utt_id: split}), ``trials`` ([(a, b, target)]),
        ``test_speakers``, ``dev_speakers``.
    """
    fab = Fabricated(root=root)
    spk_ids = [f"id{10001 + i}" for i in range(dev_speakers)] + [f"id{10270 + i}" for i in range(test_speakers)]
    iden_lines, iden = [], {}
    k = 0
    for spk in spk_ids:
        keys = []
        for v in range(videos):
            vid = f"v{spk[-3:]}x{v}Ab-_c"
            for u in range(utts_per_video):
                key = f"{spk}/{vid}/{u + 1:05d}"
                n = 6400 + 320 * (k % 7)
                write_audio(root / "wav" / f"{key}.wav", n, freq=100 + 5 * int(spk[-2:]), seed=k)
                fab.utts[key] = dict(speaker=spk, duration_s=n / SR)
                keys.append(key)
                k += 1
        for i, key in enumerate(keys):
            code = "3" if i == len(keys) - 1 else "2" if i == len(keys) - 2 else "1"
            iden_lines.append(f"{code} {key}.wav")
            iden[key] = {"1": "train", "2": "dev", "3": "test"}[code]
    (root / "iden_split.txt").write_text("\n".join(iden_lines) + "\n")
    test = spk_ids[dev_speakers:]
    trials = []
    for spk in test:
        own = sorted(k for k in fab.utts if k.startswith(spk + "/"))
        for other in own[1:]:
            trials.append((own[0], other, True))
        for spk2 in test:
            if spk2 != spk:
                trials.append((own[0], sorted(k for k in fab.utts if k.startswith(spk2 + "/"))[0], False))
    if trial_file:
        (root / trial_file).write_text("".join(f"{int(t)} {a}.wav {b}.wav\n" for a, b, t in trials))
    fab.extra.update(iden=iden, trials=trials, test_speakers=test, dev_speakers=spk_ids[:dev_speakers])
    return fab


# -- Speech Commands --------------------------------------------------------------------------
def make_speechcommands(
    root: Path,
    *,
    words: tuple[str, ...] = ("yes", "no", "left", "go", "bed", "cat", "backward"),
    speakers: int = 12,
    noise_seconds: tuple[float, ...] = (12.0, 10.5),
) -> Fabricated:
    """Write word folders, ``validation_list.txt``, ``testing_list.txt`` and noise files.

    Speakers ``s00…`` say every word once (``WORD/SPEAKERhash_nohash_0.wav``); the lists
    assign speakers 8 → train, 2 → dev, 2 → test (by index), as the real lists do by hash.

    Returns:
        ``extra``: ``split_of_speaker``, ``noise`` ({stem: seconds}).
    """
    fab = Fabricated(root=root)
    spk = [f"{i:02d}a{i * 37 % 97:02x}f00d" for i in range(speakers)]
    split_of = {s: ("train" if i < speakers - 4 else "dev" if i < speakers - 2 else "test") for i, s in enumerate(spk)}
    val, tst = [], []
    k = 0
    for w in words:
        for s in spk:
            name = f"{s}_nohash_0.wav"
            n = 16000 - 160 * (k % 9)
            write_audio(root / w / name, n, freq=300 + 20 * words.index(w), seed=k)
            fab.utts[f"{w}/{Path(name).stem}"] = dict(speaker=s, word=w, split=split_of[s], duration_s=n / SR)
            (val if split_of[s] == "dev" else tst if split_of[s] == "test" else []).append(f"{w}/{name}")
            k += 1
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(tst) + "\n")
    (root / "README.md").write_text("fabricated copy\n")
    noise = {}
    for i, secs in enumerate(noise_seconds):
        stem = ["white_noise", "running_tap", "pink_noise"][i % 3]
        rng = np.random.default_rng(100 + i)
        wav = (0.1 * rng.standard_normal(int(secs * SR))).astype(np.float32)
        (root / "_background_noise_").mkdir(parents=True, exist_ok=True)
        sf.write(str(root / "_background_noise_" / f"{stem}.wav"), wav, SR, subtype="PCM_16")
        noise[stem] = secs
    if noise_seconds:
        (root / "_background_noise_" / "README.md").write_text("noise\n")
    fab.extra.update(split_of_speaker=split_of, noise=noise)
    return fab


# -- Fluent Speech Commands -------------------------------------------------------------------
FSC_COMMANDS = (
    ("Turn on the lights", "activate", "lights", "none"),
    ("Turn up the heat in the kitchen", "increase", "heat", "kitchen"),
    ("Switch off the lamp", "deactivate", "lamp", "none"),
    ("Bring me my shoes", "bring", "shoes", "none"),
    ("Volume down", "decrease", "volume", "none"),
)


def make_fluent(root: Path, *, speakers: tuple[int, int, int] = (4, 2, 2), utts_per_speaker: int = 3) -> Fabricated:
    """Write ``data/{train,valid,test}_data.csv`` and ``wavs/speakers/SPK/UUID.wav``.

    Speakers are disjoint across the three CSVs (counts per split given by ``speakers``).
    The CSVs carry the unnamed leading index column of the real files.

    Returns:
        ``utts[utt_id]`` with speaker, split, text, intent.
    """
    fab = Fabricated(root=root)
    k = 0
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, n_spk, name in zip(("train", "dev", "test"), speakers, ("train_data.csv", "valid_data.csv", "test_data.csv"), strict=True):
        rows = [",path,speakerId,transcription,action,object,location"]
        for s in range(n_spk):
            spk = f"{split[:2]}Spk{s}Xq9"
            for _ in range(utts_per_speaker):
                text, act, obj, loc = FSC_COMMANDS[k % len(FSC_COMMANDS)]
                uid = f"{k:08x}-4474-11e9-a9a5-5dbec3b8816a"
                rel = f"wavs/speakers/{spk}/{uid}.wav"
                n = 12000 + 400 * (k % 4)
                write_audio(root / rel, n, seed=k)
                rows.append(f"{k},{rel},{spk},{text},{act},{obj},{loc}")
                fab.utts[f"{spk}/{uid}"] = dict(speaker=spk, split=split, text=text,
                                                intent=f"{act}_{obj}_{loc}", duration_s=n / SR)  # fmt: skip
                k += 1
        (root / "data" / name).write_text("\n".join(rows) + "\n")
    return fab


# -- TIMIT ------------------------------------------------------------------------------------
#: (sentence, [61-label phones]) used for every fabricated speaker.
TIMIT_SENTENCES = {
    "SA1": ["h#", "sh", "ix", "hv", "eh", "dcl", "jh", "ih", "h#"],
    "SI1027": ["h#", "q", "ao", "l", "ax-h", "pau", "en", "zh", "epi", "ux", "h#"],
    "SX127": ["h#", "bcl", "b", "axr", "el", "nx", "em", "eng", "kcl", "k", "h#"],
}
TIMIT_WORDS = {"SA1": ["she", "had"], "SI1027": ["all", "usual"], "SX127": ["burl", "nmk"]}


def make_timit(
    root: Path,
    *,
    speakers: dict[str, list[str]] | None = None,
    lower_case: bool = False,
) -> Fabricated:
    """Write ``TIMIT/{TRAIN,TEST}/DRn/SPK/SENT.{WAV,PHN,WRD,TXT}`` with SPHERE audio.

    Every phone lasts 800 samples (50 ms); each sentence file set uses the labels in
    :data:`TIMIT_SENTENCES`.

    Args:
        speakers: ``{"TRAIN/DR1": [...], "TEST/DR1": [...]}``; the default has two training
            speakers, one core-test speaker (MDAB0), one dev speaker (FAKS0) and one other
            TEST speaker (MZZZ0).
        lower_case: write folder and file names in lower case, as some copies have them.

    Returns:
        ``root`` is the TIMIT folder; ``utts[utt_id]`` holds speaker, part, the 61-label
        phones with sample offsets (``phn``) and text.
    """
    speakers = speakers or {"TRAIN/DR1": ["FCJF0", "MRTR0"], "TEST/DR1": ["MDAB0", "FAKS0"], "TEST/DR2": ["MZZZ0"]}
    base = root / "TIMIT"
    fab = Fabricated(root=base)

    def nm(s: str) -> str:
        return s.lower() if lower_case else s

    k = 0
    for part_dr, spks in speakers.items():
        for spk in spks:
            folder = base / nm(part_dr) / nm(spk)
            for sent, phs in TIMIT_SENTENCES.items():
                step = 800
                n = step * len(phs)
                samples = (synth_wave(n, freq=200 + 13 * k, seed=k) * 20000).astype(np.int16)
                write_sphere(folder / nm(f"{sent}.WAV"), samples, utterance_id=f"{spk.lower()}_{sent.lower()}")
                phn = [(i * step, (i + 1) * step, p) for i, p in enumerate(phs)]
                (folder / nm(f"{sent}.PHN")).write_text("".join(f"{a} {b} {p}\n" for a, b, p in phn))
                ws = TIMIT_WORDS[sent]
                wrd = [(step * (1 + 3 * i), step * (4 + 3 * i), w) for i, w in enumerate(ws)]
                (folder / nm(f"{sent}.WRD")).write_text("".join(f"{a} {b} {w}\n" for a, b, w in wrd))
                text = " ".join(ws).capitalize() + "."
                (folder / nm(f"{sent}.TXT")).write_text(f"0 {n} {text}\n")
                fab.utts[f"{spk.lower()}_{sent.lower()}"] = dict(
                    speaker=spk.lower(), part=part_dr.split("/")[0].lower(), phn=phn, text=text,
                    duration_s=n / SR, words=[(w, a / SR, b / SR) for a, b, w in wrd],
                )  # fmt: skip
                k += 1
    return fab


# -- IEMOCAP ----------------------------------------------------------------------------------
#: Labels given in turn to the fabricated utterances: the kept ones, exc (merged into hap) and
#: dropped ones (fru, xxx, sur, …).
IEMOCAP_LABELS = (
    "neu", "exc", "fru", "sad", "xxx", "ang", "hap", "neu", "fru", "sur", "ang", "sad", "xxx", "exc", "oth", "fea", "dis",
)  # fmt: skip
IEMOCAP_WORDS = ("Excuse me.", "Yeah.", "I don't know what you mean.", "Okay, fine.", "What?")


def make_iemocap(root: Path, *, turns_per_speaker: int = 3) -> Fabricated:
    """Write ``IEMOCAP_full_release/Session1..5`` with labels, transcriptions and 16 kHz wavs.

    Each session has two dialogs (``Ses0kF_impro01``, ``Ses0kM_script01_1``) in which both of
    its speakers (F, M) speak ``turns_per_speaker`` turns each, labelled in turn with
    :data:`IEMOCAP_LABELS`. The EmoEvaluation files carry the real files' ``%`` header and
    evaluator lines, and a ``Categorical/`` sub-folder the adapter must ignore. The last turn of
    every ``impro01`` dialog has no transcription line.

    Returns:
        ``root`` is ``IEMOCAP_full_release``; ``utts[utt_id]`` holds session, speaker, label (as
        written), text (or None), duration_s and the EmoEvaluation file and line (``emo_file``,
        ``lineno``).
    """
    base = root / "IEMOCAP_full_release"
    fab = Fabricated(root=base)
    k = 0
    for s in range(1, 6):
        sess = base / f"Session{s}"
        emo_dir = sess / "dialog" / "EmoEvaluation"
        trans_dir = sess / "dialog" / "transcriptions"
        (emo_dir / "Categorical").mkdir(parents=True, exist_ok=True)
        trans_dir.mkdir(parents=True, exist_ok=True)
        for dialog in (f"Ses{s:02d}F_impro01", f"Ses{s:02d}M_script01_1"):
            emo = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            trans = []
            t = 1.5
            n_turns = 2 * turns_per_speaker
            for i in range(n_turns):
                gender = "FM"[i % 2]
                utt = f"{dialog}_{gender}{i // 2:03d}"
                n = 8000 + 800 * (k % 5)
                write_audio(sess / "sentences" / "wav" / dialog / f"{utt}.wav", n, freq=180 + 11 * k, seed=k)
                label = IEMOCAP_LABELS[k % len(IEMOCAP_LABELS)]
                start, end = t, t + n / SR
                emo.append(f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 3.0000, 2.0000]")
                fab.utts[utt] = dict(session=s, speaker=f"Ses{s:02d}_{gender}", label=label,
                                     duration_s=n / SR, emo_file=emo_dir / f"{dialog}.txt", lineno=len(emo))  # fmt: skip
                emo += [f"C-E2:\t{label.capitalize()};\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
                text = IEMOCAP_WORDS[k % len(IEMOCAP_WORDS)]
                if dialog.endswith("impro01") and i == n_turns - 1:
                    text = None
                else:
                    trans.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
                fab.utts[utt]["text"] = text
                t = end + 0.7
                k += 1
            (emo_dir / f"{dialog}.txt").write_text("\n".join(emo) + "\n")
            (emo_dir / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{dialog}_F000 :Neutral; ()\n")
            (trans_dir / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    return fab
