"""Where deepwide keeps its caches (XDG), overridable with ``DEEPWIDE_CACHE``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root cache folder: ``$DEEPWIDE_CACHE`` or ``$XDG_CACHE_HOME/deepwide`` or ``~/.cache/deepwide``."""
    env = os.environ.get("DEEPWIDE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deepwide"
