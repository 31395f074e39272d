"""LibriSpeech adapter, with optional phone alignments from Montreal Forced Aligner TextGrids.

Layout read (nothing is downloaded)::

    PATH/                         a subset, e.g. LibriSpeech/dev-clean
      SPK/CHAP/SPK-CHAP.trans.txt one line per utterance: "SPK-CHAP-UTT WORDS …"
      SPK/CHAP/SPK-CHAP-UTT.flac

or ``PATH`` = the ``LibriSpeech`` folder holding several subsets (``dev-clean/``,
``train-clean-100/`` …), which are pooled.

Splits: the content split is speaker-disjoint — by default speakers are ranked by a
deterministic hash and cut 80/10/10 (:func:`deepwide.corpora.common.speaker_disjoint_splits`);
with ``subsets={"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}`` the
official subsets (themselves speaker-disjoint) become the splits. ``sid_split`` splits each
speaker's utterances 80/10/10 by hash.

Phones: MFA TextGrids (``SPK-CHAP-UTT.TextGrid``, anywhere below the alignment folder) are
parsed here (Praat long or short text format, UTF-8 or UTF-16). ARPAbet labels lose their
stress digits; empty intervals, ``sp``, ``sil`` and ``spn`` become ``sil``. The phone set is
:data:`ARPABET_PHONES`: the 39 CMUdict phones (lower case) plus ``sil``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
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
from deepwide.corpora.manifest import SPLITS, Manifest, Segment, Utterance
from deepwide.corpora.timit import TIMIT39
from deepwide.errors import ConfigError, CorpusError

log = logging.getLogger(__name__)

#: The 39 ARPAbet phones of CMUdict (stress removed, lower case) plus ``sil``; index = class id.
ARPABET_PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh",
    "t", "th", "uh", "uw", "v", "w", "y", "z", "zh", "sil",
)  # fmt: skip

#: ``fold_to_timit39``: ARPAbet phones that TIMIT's 39-class folding merges (dx has no
#: ARPAbet counterpart and stays unused).
ARPABET_TO_TIMIT39 = {"ao": "aa", "zh": "sh"}

#: MFA labels (lower-cased) that mean "no speech phone here".
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "<eps>"})

_CHAPTER_RE = re.compile(r"^\d+$")
_UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_TG_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'  # a string; "" escapes a quote
    r"|(?<![\w\[.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w\].])"  # a number
    r"|(<exists>|<absent>)"  # a flag
)


# -- TextGrid ---------------------------------------------------------------------------------
def _decode_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path} is neither UTF-8 nor UTF-16 text; expected a Praat TextGrid") from exc


def read_textgrid(path: Path) -> dict[str, list[Segment]]:
    """Parse a Praat TextGrid in text format (long or short) by hand.

    Both formats carry the same sequence of strings and numbers; the long format only adds
    ``key =`` words and ``item [i]:`` markers, which the tokenizer skips.

    Args:
        path: a ``.TextGrid`` file (UTF-8, or UTF-16 with a byte-order mark).

    Returns:
        ``{tier_name: [(label, start_s, end_s), …]}`` for every interval tier, labels
        stripped; point tiers are read past and left out.

    Raises:
        CorpusError: the file is not a TextGrid in Praat's text format (file named).
    """
    tokens: list[tuple[str, str]] = []
    for m in _TG_TOKEN.finditer(_decode_text(path)):
        if m.group(1) is not None:
            tokens.append(("s", m.group(1).replace('""', '"')))
        elif m.group(2) is not None:
            tokens.append(("n", m.group(2)))
        else:
            tokens.append(("f", m.group(3)))
    pos = 0

    def bad(expected: str) -> CorpusError:
        got = tokens[pos][1] if pos < len(tokens) else "end of file"
        return CorpusError(
            f"{path}: not a Praat text TextGrid (expected {expected} at token {pos + 1}, got {got!r}); "
            "re-export it from MFA or Praat in text format"
        )

    def take(kind: str, expected: str) -> str:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][0] != kind:
            raise bad(expected)
        pos += 1
        return tokens[pos - 1][1]

    def number(expected: str) -> float:
        return float(take("n", expected))

    if take("s", '"ooTextFile"') != "ooTextFile":
        pos -= 1
        raise bad('"ooTextFile"')
    if take("s", '"TextGrid"') != "TextGrid":
        pos -= 1
        raise bad('"TextGrid"')
    number("xmin")
    number("xmax")
    if pos < len(tokens) and tokens[pos][0] == "f":
        if tokens[pos][1] == "<absent>":
            return {}
        pos += 1
    n_tiers = int(number("the number of tiers"))
    tiers: dict[str, list[Segment]] = {}
    for _ in range(n_tiers):
        cls = take("s", "a tier class")
        name = take("s", "a tier name")
        number("tier xmin")
        number("tier xmax")
        n = int(number("the number of intervals"))
        if cls == "IntervalTier":
            segs: list[Segment] = []
            for _ in range(n):
                a = number("interval xmin")
                b = number("interval xmax")
                segs.append((take("s", "interval text").strip(), a, b))
            tiers[name] = segs
        elif cls == "TextTier":
            for _ in range(n):
                number("point time")
                take("s", "point mark")
        else:
            pos -= 4
            raise bad('"IntervalTier" or "TextTier"')
    return tiers


def _find_tier(tiers: Mapping[str, list[Segment]], kind: str) -> list[Segment] | None:
    # MFA names tiers "words"/"phones", or "SPEAKER - words"/"SPEAKER - phones".
    for name, segs in tiers.items():
        if name.strip().lower().split(" - ")[-1] == kind:
            return segs
    return None


def arpabet_to_phone(label: str) -> str | None:
    """Map one MFA ARPAbet label to :data:`ARPABET_PHONES` (``None`` if it is not ARPAbet).

    >>> arpabet_to_phone("AH0"), arpabet_to_phone("sp"), arpabet_to_phone("")
    ('ah', 'sil', 'sil')
    """
    low = label.strip().lower()
    if low in SILENCE_LABELS:
        return "sil"
    base = low.rstrip("012")
    return base if base in ARPABET_PHONES and base != "sil" else None


def textgrid_alignment(
    path: Path, duration_s: float | None = None
) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Phone and word segments of one MFA TextGrid.

    Args:
        path: the TextGrid.
        duration_s: the audio's duration; a grid that ends more than 0.1 s away from it
            belongs to other audio and is rejected.

    Returns:
        ``(phones, words)``: phones on :data:`ARPABET_PHONES` covering the grid, adjacent
        ``sil`` intervals merged; words are the non-empty word intervals.

    Raises:
        CorpusError: no phones tier, a non-ARPAbet label, or a duration mismatch.
    """
    tiers = read_textgrid(path)
    phone_tier = _find_tier(tiers, "phones")
    if phone_tier is None:
        raise CorpusError(
            f"{path}: no 'phones' tier (tiers: {', '.join(tiers) or 'none'}); expected an MFA alignment"
        )
    phones: list[Segment] = []
    for label, a, b in phone_tier:
        ph = arpabet_to_phone(label)
        if ph is None:
            raise CorpusError(
                f"{path}: phone {label!r} is not ARPAbet; expected labels like AH0, T, sil, sp, spn "
                "(align with an ARPAbet model such as english_us_arpa)"
            )
        if b <= a:
            continue
        if phones and ph == "sil" and phones[-1][0] == "sil" and abs(phones[-1][2] - a) < 1e-6:
            phones[-1] = ("sil", phones[-1][1], b)
        else:
            phones.append((ph, a, b))
    if duration_s is not None and phones and abs(phones[-1][2] - duration_s) > 0.1:
        raise CorpusError(
            f"{path}: alignment ends at {phones[-1][2]:.3f} s but the audio lasts {duration_s:.3f} s; "
            "expected the TextGrid of this very recording"
        )
    word_tier = _find_tier(tiers, "words") or []
    words = tuple((w, a, b) for w, a, b in word_tier if w.lower() not in SILENCE_LABELS and b > a)
    return tuple(phones), words


# -- layout -----------------------------------------------------------------------------------
def _is_subset(folder: Path) -> bool:
    return any(
        c.is_dir() and _CHAPTER_RE.match(c.name) and any(g.is_dir() and _CHAPTER_RE.match(g.name) for g in c.iterdir())
        for c in folder.iterdir()
    )


def find_subsets(path: Path) -> dict[str, Path]:
    """Subsets below ``path``: ``{name: folder}`` (``path`` itself if it is one).

    Raises:
        CorpusError: no ``SPK/CHAP`` folders at either level.
    """
    if not path.is_dir():
        raise CorpusError(f"{path} is not a folder; expected a LibriSpeech subset such as dev-clean")
    if _is_subset(path):
        return {path.name: path}
    subs = {c.name: c for c in sorted(path.iterdir()) if c.is_dir() and _is_subset(c)}
    if not subs:
        raise CorpusError(
            f"{path} holds no SPK/CHAP folders; expected a LibriSpeech subset "
            "(SPK/CHAP/SPK-CHAP-UTT.flac + SPK-CHAP.trans.txt) or the folder holding subsets"
        )
    return subs


def _index_textgrids(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() == ".textgrid" and p.is_file():
            out.setdefault(p.stem, p)
    return out


def _alignment_dirs(path: Path, alignments: str | Path | None) -> list[Path]:
    if alignments is None:
        return []
    if isinstance(alignments, str) and alignments == "auto":
        cands = [path, path.parent / f"{path.name}-alignments"]
        return [c for c in cands if c.is_dir()]
    p = Path(alignments).expanduser()
    if not p.is_dir():
        raise CorpusError(
            f"alignment folder {p} does not exist; expected MFA TextGrids named SPK-CHAP-UTT.TextGrid"
        )
    return [p]


def _subset_splits(
    subsets: Mapping[str, str | Sequence[str]], found: Mapping[str, Path]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for split, names in subsets.items():
        if split not in SPLITS:
            raise ConfigError(f"subsets key {split!r} is not a split; use {', '.join(SPLITS)}")
        for name in [names] if isinstance(names, str) else list(names):
            if name not in found:
                raise CorpusError(
                    f"LibriSpeech subset {name!r} not found; subsets on disk: {', '.join(sorted(found))}"
                )
            if name in out:
                raise ConfigError(f"subset {name!r} is given for two splits; give each subset once")
            out[name] = split
    return out


@CORPORA.register("librispeech")
def librispeech_corpus(
    path: Path,
    *,
    subsets: Mapping[str, str | Sequence[str]] | None = None,
    alignments: str | Path | None = "auto",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    fold_to_timit39: bool = False,
    on_bad_audio: str = "error",
) -> Manifest:
    """Read a LibriSpeech subset (or several) into a manifest.

    Args:
        path: a subset folder (``…/LibriSpeech/dev-clean``) or the folder holding subsets.
        subsets: ``{split: subset name(s)}`` to use the official subsets as content splits;
            only the named subsets are read. ``None``: every subset found, speakers hashed
            into train/dev/test by ``fractions``.
        alignments: folder of MFA TextGrids (searched recursively by utterance id); ``"auto"``
            looks beside the audio and in a sibling ``PATH-alignments`` folder; ``None``: no
            phones.
        fractions: (train, dev, test) speaker fractions for the hashed content split, and
            utterance fractions for each speaker's ``sid_split``.
        fold_to_timit39: fold ao→aa and zh→sh so the phones live on TIMIT's 39-class set
            (:data:`deepwide.corpora.timit.TIMIT39`, shared with the synthetic corpus).
        on_bad_audio: ``"error"`` (raise on the first unreadable/missing/empty file) or
            ``"skip"`` (leave it out and list it in ``meta["skipped"]``).

    Returns:
        A :class:`Manifest` with ``text`` labels, ``phones``/``words`` where a TextGrid
        exists, phone set :data:`ARPABET_PHONES`.

    Raises:
        CorpusError: no LibriSpeech layout, missing/malformed ``*.trans.txt``, bad TextGrid,
            a speaker in two split subsets.
    """
    path = Path(path)
    bad = BadFiles(on_bad_audio)
    found = find_subsets(path)
    subset_split = _subset_splits(subsets, found) if subsets is not None else None
    use = {n: p for n, p in found.items() if subset_split is None or n in subset_split}
    root = path
    tg_index: dict[str, Path] = {}
    for d in _alignment_dirs(path, alignments):
        for k, v in _index_textgrids(d).items():
            tg_index.setdefault(k, v)

    rows: list[dict] = []
    for sub_name, sub in use.items():
        chapters = sorted(
            (c for s in sub.iterdir() if s.is_dir() and _CHAPTER_RE.match(s.name)
             for c in s.iterdir() if c.is_dir() and _CHAPTER_RE.match(c.name)),
            key=lambda c: (int(c.parent.name), int(c.name)),
        )  # fmt: skip
        for chap in iter_progress(chapters, f"librispeech {sub_name}"):
            spk, chid = chap.parent.name, chap.name
            flacs = {p.stem: p for p in chap.iterdir() if p.suffix.lower() == ".flac"}
            trans = chap / f"{spk}-{chid}.trans.txt"
            if not flacs and not trans.exists():
                continue
            expected = f"'{spk}-{chid}-NNNN TRANSCRIPT'"
            lines = parse_fields(
                trans, 2, expected, what=f"the transcript of chapter {spk}/{chid}", maxsplit=1
            )
            seen: set[str] = set()
            for lineno, (utt_id, text) in lines:
                m = _UTT_RE.match(utt_id)
                if m is None or (m.group(1), m.group(2)) != (spk, chid):
                    raise malformed(trans, lineno, expected, f"{utt_id} {text}")
                seen.add(utt_id)
                audio = flacs.get(utt_id, chap / f"{utt_id}.flac")
                hdr = header_or_report(audio, bad)
                if hdr is None:
                    continue
                rows.append(
                    dict(utt_id=utt_id, path=rel_posix(audio, root), speaker=spk, text=text,
                         duration_s=hdr[0], subset=sub_name)
                )  # fmt: skip
            for stem in sorted(set(flacs) - seen):
                bad.report(flacs[stem], f"no line for {stem} in {trans}", audio=False)
    if not rows:
        raise CorpusError(f"{path}: no usable utterances; expected SPK/CHAP/SPK-CHAP-UTT.flac files")

    speakers = sorted({r["speaker"] for r in rows})
    if subset_split is not None:
        spk_split: dict[str, str] = {}
        for r in rows:
            split = subset_split[r["subset"]]
            if spk_split.setdefault(r["speaker"], split) != split:
                raise CorpusError(
                    f"speaker {r['speaker']} is in subsets of two splits; "
                    "expected speaker-disjoint subsets (e.g. train-clean-100, dev-clean, test-clean)"
                )
        policy = "subsets"
    else:
        spk_split = speaker_disjoint_splits(speakers, fractions, salt="librispeech")
        policy = "speaker-hash"
    sid = per_speaker_splits(group_by((r["speaker"], r["utt_id"]) for r in rows), fractions)

    utts: list[Utterance] = []
    n_aligned = 0
    for r in rows:
        phones: tuple[Segment, ...] = ()
        words: tuple[Segment, ...] = ()
        tg = tg_index.get(r["utt_id"])
        if tg is not None:
            phones, words = textgrid_alignment(tg, r["duration_s"])
            if fold_to_timit39:
                phones = tuple((ARPABET_TO_TIMIT39.get(p, p), a, b) for p, a, b in phones)
            n_aligned += 1
        utts.append(
            Utterance(
                utt_id=r["utt_id"], path=r["path"], speaker=r["speaker"],
                split=spk_split[r["speaker"]], duration_s=r["duration_s"], kind="sentence",
                sid_split=sid[r["utt_id"]], text=r["text"], phones=phones, words=words,
            )
        )  # fmt: skip
    if tg_index and n_aligned < len(utts):
        log.warning("librispeech: %d of %d utterances have no TextGrid", len(utts) - n_aligned, len(utts))
    meta = {
        "adapter": "librispeech",
        "subsets": sorted(use),
        "split_policy": policy,
        "fractions": list(fractions),
        "aligned_utterances": n_aligned,
        "phone_set_doc": (
            "TIMIT 39 (ARPAbet, stress removed, ao->aa, zh->sh, sp/spn/empty -> sil)"
            if fold_to_timit39
            else "39 ARPAbet phones (stress removed) + sil; sp/spn/empty -> sil"
        ),
        **bad.as_meta(),
    }
    return Manifest(
        corpus_id=f"librispeech:{path.resolve()}",
        root=root,
        utterances=utts,
        phone_set=TIMIT39 if fold_to_timit39 else ARPABET_PHONES,
        meta=meta,
    )
