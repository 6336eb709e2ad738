"""The import graph keeps its arrows pointing down (see ``tests/layers.py``).

Layers, bottom first: core < config, store < data, llm < backends, prompts < rag,
train < strategies < evaluation < decide < engine < report, serve < cli. A module
imports its own package and lower layers only; modules form no cycle (imports under
``TYPE_CHECKING`` and inside functions count: they hide a cycle, they do not remove
it); outside ``cli/`` (where lazy imports keep ``adaptlab --help`` free of torch) an
adaptlab import inside a function needs a line in the allow-list with its reason.
"""

from __future__ import annotations

import importlib
import shutil
import types
from pathlib import Path

import pytest

from tests import layers

MAX_FUNCTION_IMPORTS = 10


@pytest.fixture(scope="module")
def found() -> list[layers.Import]:
    return layers.imports()


def test_every_package_has_a_layer(found: list[layers.Import]) -> None:
    packages = {layers.package_of(m) for m in layers.modules()}
    unknown = sorted(p for p in packages if p not in layers.TOP and not _has_layer(p))
    assert unknown == [], f"add these packages to tests/layers.py LAYERS: {unknown}"


def _has_layer(package: str) -> bool:
    try:
        layers.layer_of(package)
    except KeyError:
        return False
    return True


def test_no_upward_imports(found: list[layers.Import]) -> None:
    bad = [f"{i.source}:{i.line} imports {i.target} ({i.place})" for i in layers.upward(found)]
    assert bad == [], "imports that point up the layers:\n" + "\n".join(bad)


def test_no_cycles(found: list[layers.Import]) -> None:
    assert layers.cycles(found) == []


def test_function_imports_are_allow_listed(found: list[layers.Import]) -> None:
    inside = layers.function_imports(found)
    unlisted = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in inside
        if (i.source, i.target) not in layers.FUNCTION_IMPORTS_ALLOWED
    ]
    assert unlisted == [], (
        "adaptlab imports inside functions outside cli/ (move them to the top of the "
        "module, or allow-list them with a reason in tests/layers.py):\n" + "\n".join(unlisted)
    )
    assert len(layers.FUNCTION_IMPORTS_ALLOWED) <= MAX_FUNCTION_IMPORTS
    used = {(i.source, i.target) for i in inside}
    stale = sorted(set(layers.FUNCTION_IMPORTS_ALLOWED) - used)
    assert stale == [], f"allow-list entries no longer needed: {stale}"


def _copy_of_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        layers.SRC / layers.PACKAGE,
        src / layers.PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "examples"),
    )
    return src


def test_the_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """A test of the test: a temporary module of ``core`` importing the engine is
    reported as upward, once at module level and once inside a function."""
    src = _copy_of_package(tmp_path)
    before = set(layers.upward(layers.imports(src)))
    (src / "adaptlab" / "core" / "bad.py").write_text(
        "from adaptlab.engine import Project\n\n\n"
        "def f() -> None:\n"
        "    from adaptlab.report import write_report\n",
        encoding="utf-8",
    )
    after = layers.imports(src)
    up = {(i.source, i.target, i.place) for i in set(layers.upward(after)) - before}
    assert up == {
        ("adaptlab.core.bad", "adaptlab.engine", "module"),
        ("adaptlab.core.bad", "adaptlab.report", "function"),
    }
    inside = {(i.source, i.target) for i in layers.function_imports(after)}
    assert ("adaptlab.core.bad", "adaptlab.report") in inside


def test_the_rules_catch_a_peer_import_and_a_cycle(tmp_path: Path) -> None:
    """``serve`` and ``report`` are peers; two modules importing each other (one of
    them only for type checking) are a cycle."""
    src = _copy_of_package(tmp_path)
    serve = src / "adaptlab" / "serve"
    (serve / "peer.py").write_text("from adaptlab.report import write_report\n", encoding="utf-8")
    (serve / "a.py").write_text("from adaptlab.serve import b\n", encoding="utf-8")
    (serve / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from adaptlab.serve import a\n",
        encoding="utf-8",
    )
    found = layers.imports(src)
    assert ("adaptlab.serve.peer", "adaptlab.report") in {
        (i.source, i.target) for i in layers.upward(found)
    }
    assert ["adaptlab.serve.a", "adaptlab.serve.b"] in layers.cycles(found)


def _packages() -> list[str]:
    return sorted(name for name, path in layers.modules().items() if path.name == "__init__.py")


@pytest.mark.parametrize("name", _packages())
def test_package_all_lists_its_public_names(name: str) -> None:
    """A package's ``__all__`` is sorted, names only what exists, and holds every public
    name the package defines (httpx's tests/test_exported_members.py): what is defined
    in the package or one of its modules, and its constants. Names imported from
    elsewhere may be re-exported (listed) or used (not listed)."""
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported == sorted(exported, key=_isort_style), f"{name}: sort __all__ (ruff RUF022)"
    missing = [n for n in exported if not hasattr(module, n) and n not in _lazy(module)]
    assert missing == [], f"{name}: __all__ names what does not exist"
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and not isinstance(value, types.ModuleType)
        and _defined_in(value, name)
    } | _lazy(module)
    assert sorted(defined - set(exported)) == [], f"{name}: add these to __all__"


def _isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order (isort style): CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def _lazy(module: types.ModuleType) -> set[str]:
    return set(getattr(module, "_LAZY", {}))


def _defined_in(value: object, package: str) -> bool:
    if isinstance(value, type) or callable(value):
        origin = getattr(value, "__module__", None) or ""
        return origin == package or origin.startswith(package + ".")
    # A constant: bool (TYPE_CHECKING) and typing's special forms are no constants.
    return not isinstance(value, bool) and type(value).__module__ not in {"typing", "__future__"}
