"""Frozen dataclass configs: dict/TOML round trips and content hashes for cache keys.

Configs are ``@dataclass(frozen=True)`` classes validated in ``__post_init__``. This module
turns them into plain dicts (JSON/TOML-able), reads them back with unknown-key checks, and
hashes them canonically (sorted JSON), never from ``str(args)``.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import tomllib
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import tomli_w

from deepwide.errors import (
    ConfigError,
    DeepwideError,
    DiskFullError,
    disk_full_message,
    is_disk_full,
)

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return a plain, JSON-able dict of a (possibly nested) dataclass config.

    Tuples become lists and ``Path`` objects strings, so the dict survives JSON and TOML.
    """
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "config") -> C:
    """Build ``cls`` from ``data``, rejecting unknown keys and converting lists to tuples.

    Nested dataclass fields are built recursively. Validation errors from ``__post_init__``
    (``ValueError``/``TypeError``) become a one-line :class:`ConfigError` naming ``where``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints.get(name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = config_from_dict(hint, value, where=f"{where}.{name}")
        else:
            value = _typed(value, hint, f"{where}: {name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)  # type: ignore[return-value]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _describe(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the field type ``hint`` (lists become tuples).

    Understands ``bool``, ``int``, ``float`` (an int is accepted as is), ``str``, ``X | None``,
    ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict``/``Mapping[K, V]`` and
    ``Literal``; any other hint is passed through unchecked. Raises a one-line
    :class:`ConfigError` naming ``where``, the expected type and what was found.
    """
    origin, args = get_origin(hint), get_args(hint)
    if hint is None or hint is Any or isinstance(hint, TypeVar):
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _typed(value, arm, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(f"{where} must be {_hint_name(hint)}, got {_describe(value)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {_describe(value)}")
    if origin in (tuple, list) or hint in (tuple, list):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list ({_hint_name(hint)}), got {_describe(value)}")
        if not args:
            items = list(value)
        elif origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} items ({_hint_name(hint)}), got {_describe(value)}")
            items = [_typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping, collections.abc.Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table ({_hint_name(hint)}), got {_describe(value)}")
        if len(args) == 2:
            return {_typed(k, args[0], f"{where} key"): _typed(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{where} must be {_hint_name(hint)}, got {_describe(value)}")


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def config_hash(obj: Any, length: int = 16) -> str:
    """Canonical content hash (sha256 hex prefix) of a config dataclass or a JSON-able value."""
    data = config_to_dict(obj) if dataclasses.is_dataclass(obj) else _plain(obj)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing or malformed file into a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; check the path")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc


def dump_toml(obj: Any, path: str | Path) -> None:
    """Write a config dataclass (or dict) as TOML, atomically."""
    data = config_to_dict(obj) if dataclasses.is_dataclass(obj) else _plain(obj)
    atomic_write_bytes(path, tomli_w.dumps(_drop_none(data)).encode())


def _drop_none(value: Any) -> Any:
    # TOML has no null: a None field is written as an absent key (its default on reload).
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[str]:
    """A temporary file name beside ``path`` that becomes ``path`` when the body succeeds.

    The file gets the permissions a plain ``open`` would give (mkstemp creates 0600), is
    flushed to disk before the rename, and is removed if the body raises, so ``path`` holds
    either its old content or the whole new one.
    """
    from deepwide.system import current_umask

    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(p.parent)) from exc
        raise
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, p)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, Exception) and not isinstance(exc, DeepwideError) and _write_failed_for_space(exc, p.parent):
            raise DiskFullError(disk_full_message(p.parent)) from exc
        raise


def _write_failed_for_space(exc: Exception, folder: Path) -> bool:
    """Whether a failed write was a full disk: ENOSPC itself, or an error some writers
    (netCDF4 raises ``PermissionError`` on its temp file) report instead while the disk is full."""
    if is_disk_full(exc):
        return True
    if isinstance(exc, OSError):
        import shutil

        try:
            return shutil.disk_usage(folder).free < 1_000_000
        except OSError:
            return False
    return False


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_netcdf(path: str | Path, ds: Any) -> None:
    """Write an xarray Dataset as NetCDF4 to ``path`` via a temporary file and a rename."""
    with atomic_target(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text twin of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    atomic_write_text(path, json.dumps(_plain(data), indent=2, sort_keys=True) + "\n")
