"""Lazy package exports (deepwide.lazy): nothing heavy on import, each name once, in dir()."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_packages_import_without_torch_and_resolve_their_names() -> None:
    code = (
        "import sys\n"
        "import deepwide.models as m, deepwide.distill as d, deepwide.extract as e, deepwide.figures as f\n"
        "assert 'torch' not in sys.modules, 'a package import pulled in torch'\n"
        "assert m.parse_param_count('3M') == 3_000_000 and 'torch' not in sys.modules\n"
        "assert {'load_model', 'EncoderConfig'} <= set(dir(m)) and 'train_student' in dir(d)\n"
        "assert e.run_extract is e.run_extract and 'torch' in sys.modules\n"
        "assert f.make_figures.__module__ == 'deepwide.figures.recipes'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_is_an_attribute_error() -> None:
    import deepwide.models

    with pytest.raises(AttributeError, match="'deepwide.models' has no attribute 'nope'"):
        _ = deepwide.models.nope  # type: ignore[attr-defined]
