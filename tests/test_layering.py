"""The layering of ARCHITECTURE.md, enforced on every import statement of the tree.

* The core (``deepwide/``: cli, config, registry, errors, audio, paths, store, corpora, models …)
  imports no stage — not at module level, not inside a function.
* A stage (extract, probing, distill, analysis, figures) imports only the core and itself.
* Only the study imports stages.
* No module imports another package's ``_private`` name (scripts and benchmarks included).

Imports are read with :mod:`ast` (every ``import``/``from … import`` anywhere in a file,
relative ones resolved), so a function-local import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder at the repository root -> the import package it installs as
FOLDERS = {"deepwide": "deepwide", "extract": "deepwide.extract", "probing": "deepwide.probing",
           "distill": "deepwide.distill", "analysis": "deepwide.analysis", "figures": "deepwide.figures",
           "study": "deepwide.study"}
STAGES = ("deepwide.extract", "deepwide.probing", "deepwide.distill", "deepwide.analysis", "deepwide.figures")
STUDY = "deepwide.study"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[0] in FOLDERS:
        parts = FOLDERS[parts[0]].split(".") + parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_files() -> list[Path]:
    files = []
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, module] if module else base)
            out.append((node.lineno, module, [alias.name for alias in node.names]))
    return out


def _layer(module: str) -> str:
    """``core``, a stage's package name, or ``study``."""
    for stage in (*STAGES, STUDY):
        if module == stage or module.startswith(stage + "."):
            return stage
    return "core"


def _is_deepwide(module: str) -> bool:
    return module == "deepwide" or module.startswith("deepwide.")


def _owner(module: str) -> str:
    """The package that owns ``module``'s private names: a stage, a core sub-package, or the core."""
    layer = _layer(module)
    if layer != "core":
        return layer
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else "deepwide"


def layering_violations() -> list[str]:
    problems = []
    for path in _package_files():
        me = _module_name(path)
        my_layer = _layer(me)
        for line, module, _names in _imports(path):
            if not _is_deepwide(module):
                continue
            target = _layer(module)
            if target == "core" or target == my_layer or my_layer == STUDY:
                continue
            who = "the core" if my_layer == "core" else f"stage {my_layer}"
            problems.append(f"{path.relative_to(ROOT)}:{line}: {who} imports {module}")
    return problems


def private_import_violations() -> list[str]:
    problems = []
    files = _package_files() + sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    for path in files:
        inside = path.parts[len(ROOT.parts)] in FOLDERS
        me_owner = _owner(_module_name(path)) if inside else None
        for line, module, names in _imports(path):
            if not _is_deepwide(module):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private_module = any(p.startswith("_") and not p.startswith("__") for p in module.split("."))
            if (private or private_module) and _owner(module) != me_owner:
                what = ", ".join(private) if private else module
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports private {what} from {module}")
    return problems


def test_the_core_imports_no_stage_and_stages_import_only_the_core() -> None:
    assert layering_violations() == []


def test_no_module_imports_another_packages_private_names() -> None:
    assert private_import_violations() == []


@pytest.mark.parametrize(("source", "where", "expect"), [
    ("def f():\n    from deepwide.probing.run import probe_stores\n", "deepwide/models/x.py", "the core imports"),
    ("from deepwide.analysis import cka\n", "probing/x.py", "stage deepwide.probing imports"),
    ("from ..probing import tasks\n", "extract/x.py", "stage deepwide.extract imports"),
    ("import deepwide.figures.plots\n", "distill/x.py", "stage deepwide.distill imports"),
    ("from deepwide.probing.run import _load_layers\n", "scripts/x.py", "imports private _load_layers"),
    ("from deepwide.models.loading import _helper\n", "extract/x.py", "imports private _helper"),
])
def test_the_checks_catch_what_they_are_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            source: str, where: str, expect: str) -> None:
    """Planted files of each kind are found (so the two tests above can fail)."""
    for folder in (*FOLDERS, "scripts", "benchmarks"):
        (tmp_path / folder).mkdir()
    planted = tmp_path / where
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(source)
    (tmp_path / "study" / "ok.py").write_text("from deepwide.probing.run import probe_stores\n")
    (tmp_path / "probing" / "ok.py").write_text("from deepwide.probing.run import _private\nfrom deepwide.store import open_store\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = layering_violations() + private_import_violations()
    assert len(found) == 1 and expect in found[0] and found[0].startswith(where), found
