"""The PEP 517 build backend: setuptools' own, with one information-only notice silenced.

``pip install -e .`` of this layout (stage folders mapped into ``deepwide.*`` by
``package-dir``) makes setuptools install through a meta-path finder, and it then always
emits an ``InformationOnly`` warning ("Editable installation. Please be careful with folders
in your working directory with the same name as your package…"), which pip relays as a
``BuildBackendWarning`` that new users read as a failure. It reports no problem; every other
setuptools warning (deprecations, bad metadata) still shows.
"""

from __future__ import annotations

import warnings
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the rest of the PEP 517/660 hooks, unchanged)
from setuptools.warnings import InformationOnly


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """setuptools' ``build_editable`` without its information-only notices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
