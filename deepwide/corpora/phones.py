"""The synthetic corpus's phone set and the table that maps espeak-ng's symbols onto it.

Phone labels are the 39 classes of the standard TIMIT folding (Lee & Hon, 1989): 38 phones
plus ``sil``. espeak-ng reports phonemes as its own ASCII mnemonics (Kirshenbaum-like, e.g.
``'oU``, ``@2``, ``t#``); :func:`map_espeak_phone` removes stress marks, sends every pause
(``_``, ``_:``, ``_!`` …) to ``sil`` and looks the rest up in :data:`ESPEAK_TO_PHONE`, which
merges accent and allophonic variants (the rhotic vowels ``A@ o@ O@ e@ i@3 U@ aI3`` keep
their vowel, their r-colouring is not split off; ``?`` is the glottal /t/ of "button").
Every symbol that en-us speaks for the corpus's word lists is in the table; a symbol that is
not raises ``KeyError`` (a programming error: extend the table).

The same 39-phone set is what the TIMIT adapter's 61→39 folding produces, so probes trained
on either corpus share their classes.
"""

from __future__ import annotations

#: The phone set (class index = position). ``sil`` is last.
PHONE_SET: tuple[str, ...] = (
    # vowels and diphthongs
    "iy", "ih", "eh", "ae", "ah", "uw", "uh", "aa", "ey", "ay", "oy", "aw", "ow", "er",
    # semivowels
    "l", "r", "w", "y",
    # nasals
    "m", "n", "ng",
    # stops, affricates, fricatives
    "ch", "jh", "dh", "b", "d", "dx", "g", "p", "t", "k", "z", "v", "f", "th", "s", "sh", "hh",
    # silence and pauses
    "sil",
)

SILENCE = "sil"

#: espeak-ng English mnemonic (stress marks removed) → phone of :data:`PHONE_SET`.
ESPEAK_TO_PHONE: dict[str, str] = {
    # schwas and central vowels
    "@": "ah", "@2": "ah", "@5": "uw", "@-": "ah", "a#": "ah", "V": "ah",
    "3": "er", "3:": "er",
    # front vowels
    "i": "iy", "i:": "iy", "i@": "iy",
    "I": "ih", "I#": "ih", "I2": "ih", "i@3": "ih",
    "E": "eh", "e": "eh", "e@": "eh",
    "a": "ae", "aa": "ae",
    # back vowels (TIMIT folds ao into aa)
    "A:": "aa", "A@": "aa", "0": "aa", "O:": "aa", "O2": "aa", "O@": "aa", "o@": "aa",
    "U": "uh", "U@": "uh",
    "u:": "uw", "u": "uw",
    # diphthongs
    "eI": "ey", "aI": "ay", "aI@": "ay", "aI3": "ay", "aU": "aw", "aU@": "aw",
    "oU": "ow", "OI": "oy",
    # syllabic consonants and linking sounds
    "@L": "l", "l-": "l", "n-": "n", "m-": "m", "r-": "r", ";": "y",
    # consonants
    "p": "p", "b": "b", "t": "t", "t2": "t", "d": "d", "d2": "d", "k": "k", "g": "g",
    "t#": "dx", "d#": "dx", "?": "t",
    "tS": "ch", "dZ": "jh",
    "f": "f", "v": "v", "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "sh",
    "h": "hh", "x": "hh",
    "m": "m", "n": "n", "N": "ng",
    "l": "l", "r": "r", "w": "w", "j": "y",
}

_STRESS = "',%="


def map_espeak_phone(label: str) -> str:
    """Map one espeak-ng phoneme label onto :data:`PHONE_SET`.

    Args:
        label: the label of a phoneme event, e.g. ``"'oU"``, ``",aI"``, ``"_:"``, ``""``.

    Returns:
        A member of :data:`PHONE_SET` (pauses and empty labels give ``"sil"``).

    Raises:
        KeyError: the symbol is not in :data:`ESPEAK_TO_PHONE`.
    """
    base = label.lstrip(_STRESS)
    if not base or base.startswith("_"):
        return SILENCE
    try:
        return ESPEAK_TO_PHONE[base]
    except KeyError:
        raise KeyError(f"espeak phoneme {label!r} has no entry in ESPEAK_TO_PHONE") from None


def phone_index(phone: str) -> int:
    """Class index of ``phone`` in :data:`PHONE_SET` (``ValueError`` if absent)."""
    return PHONE_SET.index(phone)


def merge_segments(
    segments: list[tuple[str, int, int]], labels: tuple[str, ...] = (SILENCE,)
) -> list[tuple[str, int, int]]:
    """Join touching neighbours that carry the same label from ``labels``.

    Pauses come as several events (``_:`` then ``_``), which map to one ``sil``; two equal
    phones in a row (``d`` ``d`` in "and David") stay two segments.

    Args:
        segments: ``(label, start, end)`` in time order.
        labels: the labels whose touching repeats are merged.

    Returns:
        The same coverage with merged repeats.
    """
    out: list[tuple[str, int, int]] = []
    for label, start, end in segments:
        if out and label in labels and out[-1][0] == label and out[-1][2] == start:
            out[-1] = (label, out[-1][1], end)
        else:
            out.append((label, start, end))
    return out


assert len(PHONE_SET) == len(set(PHONE_SET)) == 39
assert set(ESPEAK_TO_PHONE.values()) <= set(PHONE_SET)
