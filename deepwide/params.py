"""One grammar for the list and count values of every command and config: parsers + click types.

- **Index lists** (``--layers``, ``--targets``): ``all``, or comma-separated items ``N``,
  ``N-M`` (inclusive) and ``N-M:S`` (every ``S``-th), non-negative, in the order written, no
  index twice. ``all`` (or nothing) is ``None``: the command's default set.
- **Count lists** (``--depths``): the same items, each at least 1, at least one.
- **Number lists** (``--penalties``): comma-separated positive numbers.
- **Parameter counts** (``--budget``, ``--params``): ``26.9M``, ``900k``, ``1.2G``,
  ``26_900_000`` or ``2.69e7``.

Each parser raises a one-line :class:`~deepwide.errors.ConfigError` naming the option and an
example; each click type calls its parser, so the CLI and config files read values alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from deepwide.errors import ConfigError

_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_index_list(text: str | None, what: str = "--layers") -> tuple[int, ...] | None:
    """``"0,4,8"`` -> ``(0, 4, 8)``; ``"0-3,6"`` -> ``(0, 1, 2, 3, 6)``; ``"0-12:4"`` ->
    ``(0, 4, 8, 12)``; ``"all"``, ``""`` or ``None`` -> ``None``.

    Raises:
        ConfigError: a malformed item, a reversed range, a step below 1 or an index twice.
    """
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = _ITEM.fullmatch(part)
        if not m:
            raise ConfigError(f"{what} {text!r} is not valid; use all or indices like 0,4,8, 0-12 or 0-12:4")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo:
            raise ConfigError(f"{what} range {part!r} is reversed; write it as {hi}-{lo}")
        if step < 1:
            raise ConfigError(f"{what} range {part!r} has step 0; give a step of at least 1")
        out.extend(range(lo, hi + 1, step))
    if len(set(out)) != len(out):
        raise ConfigError(f"{what} {text!r} names an index twice")
    return tuple(out)


def parse_count_list(text: str, what: str = "--depths") -> tuple[int, ...]:
    """``"2,3,6,12"`` -> ``(2, 3, 6, 12)``: an index list of positive integers, not empty.

    Raises:
        ConfigError: malformed, empty, or an item below 1.
    """
    values = parse_index_list(text, what) if text.strip().lower() != "all" else None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} {text!r} must list positive integers, e.g. 2,3,6,12")
    return values


def parse_number_list(text: str, what: str = "--penalties") -> tuple[float, ...]:
    """``"1,0.1,0.01"`` -> ``(1.0, 0.1, 0.01)``: positive finite numbers, not empty.

    Raises:
        ConfigError: not numbers, empty, or a number that is not positive.
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a comma-separated list of numbers, e.g. 1,0.1,0.01") from None
    if not values or not all(0 < v < float("inf") for v in values):
        raise ConfigError(f"{what} {text!r} must list positive numbers, e.g. 1,0.1,0.01")
    return values


def parse_param_count(text: str, what: str = "parameter count") -> int:
    """Parse ``26.9M``, ``900k``, ``1.2G``, ``26_900_000`` or ``2.69e7`` into an int.

    Raises:
        ConfigError: anything else, or a count below 1.
    """
    cleaned = str(text).strip().replace("_", "").replace(",", "")
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)", cleaned)
    if not match:
        raise ConfigError(f"cannot read {what} {text!r}; write e.g. 26.9M, 900k or 26900000")
    value = int(round(float(match.group(1)) * _SUFFIX[match.group(2).lower()]))
    if value < 1:
        raise ConfigError(f"{what} {text!r} must be positive")
    return value


class _Parsed(click.ParamType):
    """A click type that runs one of the parsers above on the option's text."""

    def __init__(self, name: str, parse: Callable[[str, str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default already parsed, or a value given programmatically
        what = param.opts[0] if param is not None and param.opts else self.name
        return self._parse(value, what)


#: Click types: ``type=INDEX_LIST`` etc. A bad value is the parser's one-line ConfigError.
INDEX_LIST = _Parsed("list", parse_index_list)
COUNT_LIST = _Parsed("list", parse_count_list)
NUMBER_LIST = _Parsed("list", parse_number_list)
PARAM_COUNT = _Parsed("count", parse_param_count)

__all__ = [
    "COUNT_LIST",
    "INDEX_LIST",
    "NUMBER_LIST",
    "PARAM_COUNT",
    "parse_count_list",
    "parse_index_list",
    "parse_number_list",
    "parse_param_count",
]
