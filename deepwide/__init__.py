"""deepwide: distil self-supervised speech models and explain what the student kept.

The stage folders at the repository root install as sub-packages of this one
(``deepwide.extract``, ``deepwide.probing``, ``deepwide.distill``, ``deepwide.analysis``,
``deepwide.figures``); the shared core lives here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepwide")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
