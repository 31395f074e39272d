"""What the synthetic speakers say: sentences, Speech Commands keywords, Fluent Speech Commands
intents.

Sentences come from templates filled from word lists (5–12 words); keywords are SUPERB's 12
keyword-spotting classes (Speech Commands' 10 keywords, ``_unknown_`` words, ``_silence_``);
commands are phrasings of Fluent Speech Commands' 31 intents, ``action_object_location``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The 10 Speech Commands keywords.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: Speech Commands v1's auxiliary words, spoken for the ``_unknown_`` class.
UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin",
    "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero",
)
UNKNOWN, SILENCE_CLASS = "_unknown_", "_silence_"
#: SUPERB's 12 keyword-spotting classes.
KEYWORD_CLASSES = (*KEYWORDS, UNKNOWN, SILENCE_CLASS)

_NAMES = (
    "Anna Ben Carla David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olivia Paul "
    "Rosa Sam Tina Victor Walter Zoe Lucy Martin Helen Oscar Ruth George Judy Peter Thomas "
    "Laura Simon Nora Hugo Julia"
).split()
_NOUNS = (
    "apple basket bicycle book bottle bridge button camera candle car chair cloud coat cup "
    "door dog engine feather fish flower garden guitar hammer hat house island jacket key "
    "ladder lamp letter machine map mirror mountain newspaper orange packet paper pencil "
    "piano picture pillow plate pocket radio river rope sandwich ship shoe shirt spoon storm "
    "table teacher ticket tower train tree umbrella wagon wallet window whistle blanket "
    "bucket cabbage carpet cushion drawer envelope fence helmet kettle lemon needle onion "
    "parcel puzzle rabbit saucer scarf spider towel turtle violin watch"
).split()
_ADJS = (
    "big small old new red green blue yellow heavy light quiet noisy bright dark warm cold "
    "wet dry soft hard strange famous broken empty careful lazy clever gentle rough smooth "
    "tiny huge pleasant ordinary purple golden wooden silver simple useful curious"
).split()
_PAST = (
    "found bought carried painted opened closed washed moved lost sold borrowed cleaned "
    "dropped fixed watched pushed pulled packed remembered followed measured noticed needed "
    "wrapped hid forgot chose shared showed"
).split()
_BASE = (
    "find buy carry paint open close wash move sell borrow clean fix watch push pull pack "
    "measure check bring take choose share show wrap hide"
).split()
_PLACES = (
    "station market office school museum harbor library garden village forest beach "
    "hospital airport bakery factory church theater kitchen valley corner castle farm garage"
).split()
_TIMES = (
    "yesterday", "today", "this morning", "last night", "on Monday", "on Friday",
    "after lunch", "before dinner", "every Sunday", "in the evening", "next week", "at noon",
    "on Tuesday", "last winter", "in the summer",
)
_ADVS = "quickly slowly quietly carefully suddenly happily early again rarely often".split()
_NUMS = "two three four five six seven eight nine ten eleven twelve twenty thirty".split()
_PREPS = (
    "near", "behind", "beside", "under", "above", "inside", "outside", "across", "next to",
    "in front of",
)
_SENTENCE_TEMPLATES = (
    "{Name} {past} the {adj} {noun} {prep} the {place}.",
    "{Time}, {name} {past} {num} {adj} {nouns}.",
    "Did {name} {base} the {noun} {time}?",
    "The {noun} {prep} the {place} was {adv} {adj}.",
    "Please {base} the {adj} {noun} and {base} the {noun2}.",
    "{Name} and {name2} {past} a {adj} {noun} {time}.",
    "Why is the {noun} so {adj}?",
    "We should {base} {num} {nouns} before {name} comes back.",
    "I think the {noun} is {adj}, but {name} says it is {adj2}.",
    "There were {num} {adj} {nouns} {prep} the {place}.",
    "{Name} {adv} {past} the {noun} {time}.",
    "My {noun} is {prep} the {adj} {noun2}.",
)

#: Fluent Speech Commands' 31 intents as (action, object, location) and their phrasings.
_LOCATIONS = ("kitchen", "bedroom", "washroom")
_LANGUAGES = ("chinese", "english", "german", "korean")


def _command_phrases() -> dict[tuple[str, str, str], tuple[str, ...]]:
    out: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for act, on_off in (("activate", "on"), ("deactivate", "off")):
        out[(act, "lights", "none")] = (
            f"turn {on_off} the lights", f"switch {on_off} the lights", f"lights {on_off}",
            f"turn the lights {on_off}",
        )
        for loc in _LOCATIONS:
            out[(act, "lights", loc)] = (
                f"turn {on_off} the {loc} lights", f"switch {on_off} the lights in the {loc}",
                f"{loc} lights {on_off}", f"turn the lights {on_off} in the {loc}",
            )
        out[(act, "lamp", "none")] = (
            f"turn {on_off} the lamp", f"switch {on_off} the lamp", f"lamp {on_off}",
        )
    out[("activate", "music", "none")] = (
        "play the music", "put on some music", "start the music", "music on please",
    )
    out[("deactivate", "music", "none")] = (
        "stop the music", "turn off the music", "pause the music", "music off please",
    )
    for act, up, more, cmp_ in (("increase", "up", "increase", "warmer"), ("decrease", "down", "decrease", "cooler")):
        out[(act, "heat", "none")] = (
            f"turn the heat {up}", f"make it {cmp_}", f"{more} the temperature",
            f"turn {up} the heating",
        )
        for loc in _LOCATIONS:
            out[(act, "heat", loc)] = (
                f"turn the heat {up} in the {loc}", f"make the {loc} {cmp_}",
                f"{more} the temperature in the {loc}", f"turn {up} the {loc} heating",
            )
    out[("increase", "volume", "none")] = (
        "turn up the volume", "make it louder", "increase the volume", "louder please",
    )
    out[("decrease", "volume", "none")] = (
        "turn down the volume", "make it quieter", "decrease the volume", "too loud",
    )
    for obj in ("juice", "newspaper", "shoes", "socks"):
        det = "some" if obj == "juice" else "my"
        out[("bring", obj, "none")] = (
            f"bring me {det} {obj}", f"fetch {det} {obj}", f"get me {det} {obj}",
            f"I need {det} {obj}",
        )
    for lang in _LANGUAGES:
        cap = lang.capitalize()
        out[("change", lang, "none")] = (
            f"change the language to {cap}", f"switch to {cap}", f"set the language to {cap}",
            f"use {cap}",
        )
    out[("change", "language", "none")] = (
        "change the language", "switch the language", "change language",
        "use another language",
    )
    return out


COMMAND_PHRASES = _command_phrases()
#: Intent strings ``action_object_location``, sorted (31 of them).
INTENTS = tuple(sorted("_".join(k) for k in COMMAND_PHRASES))
assert len(INTENTS) == 31


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun == "knife":
        return "knives"
    return noun + "s"


def make_sentence(rng: np.random.Generator) -> str:
    """One English sentence from the templates and word lists (5–12 words)."""
    template = _SENTENCE_TEMPLATES[int(rng.integers(len(_SENTENCE_TEMPLATES)))]

    def pick(words: Sequence[str], avoid: str | None = None) -> str:
        while True:
            w = words[int(rng.integers(len(words)))]
            if w != avoid:
                return w

    name, noun, adj = pick(_NAMES), pick(_NOUNS), pick(_ADJS)
    slots = {
        "name": name, "Name": name, "name2": pick(_NAMES, name),
        "noun": noun, "noun2": pick(_NOUNS, noun), "nouns": _plural(noun),
        "adj": adj, "adj2": pick(_ADJS, adj), "past": pick(_PAST), "base": pick(_BASE),
        "place": pick(_PLACES), "time": pick(_TIMES), "adv": pick(_ADVS), "num": pick(_NUMS),
        "prep": pick(_PREPS),
    }
    slots["Time"] = slots["time"][0].upper() + slots["time"][1:]
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def make_command(rng: np.random.Generator, intent: str) -> str:
    """One phrasing of ``intent`` (e.g. ``"activate_lights_kitchen"``)."""
    phrases = COMMAND_PHRASES[tuple(intent.split("_"))]  # type: ignore[index]
    return phrases[int(rng.integers(len(phrases)))]
