"""The import graph of the adaptlab package and the layer order it must keep.

``tests/test_layers.py`` holds the rules; this module reads every module's AST
(no import runs) and reports what breaks them. ``python -m tests.layers`` prints
the counts: imports, upward imports, cycles and adaptlab imports inside functions.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "adaptlab"
SRC = Path(__file__).resolve().parents[1] / "src"

#: The layers, bottom first. A module may import its own package and any package
#: of a lower layer; packages of one layer are peers and import neither way.
LAYERS: list[set[str]] = [
    {"core"},
    {"config", "store"},
    {"data", "llm"},
    {"backends", "prompts"},
    {"rag", "train"},
    {"strategies"},
    {"evaluation"},
    {"decide"},
    {"engine"},
    {"report", "serve"},
    {"cli"},
]
#: The package root (``adaptlab/__init__.py``, the public API that re-exports the
#: engine lazily) and ``__main__`` sit above everything.
TOP = {"<root>", "__main__"}

#: adaptlab imports allowed inside a function outside ``cli/``, each with its reason:
#: (importing module, imported module) -> why.
FUNCTION_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import of an adaptlab module: where, what, and how it is placed.

    ``place`` is "module" (runs at import), "function" (inside a def) or
    "type" (under ``if TYPE_CHECKING:``, never runs but still a dependency).
    """

    source: str
    target: str
    line: int
    place: str


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "<root>"
    return parts[1]


def layer_of(package: str) -> int:
    if package in TOP:
        return len(LAYERS)
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise KeyError(package)


def modules(src: Path = SRC) -> dict[str, Path]:
    """Module name -> file, for every module of the package under ``src``."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]
) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        names = [f"{name}.{a.name}" if f"{name}.{a.name}" in known else name for a in node.names]
    out = []
    for name in names:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            continue
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def imports(src: Path = SRC) -> list[Import]:
    """Every adaptlab import of every module under ``src`` (one per imported module and
    line: ``from a import b, c`` of two names of module ``a`` counts once)."""
    mods = modules(src)
    known = set(mods)
    found: dict[tuple[str, str, int], Import] = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, place in _walk(tree, "module"):
            for target in _targets(module, path.name == "__init__.py", node, known):
                if target != module:
                    found.setdefault(
                        (module, target, node.lineno), Import(module, target, node.lineno, place)
                    )
    return list(found.values())


def _walk(node: ast.AST, place: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """The import statements under ``node``, each with where it sits."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, "function" if place == "module" else place)
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for sub in child.body:
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), "type")
            for sub in child.orelse:
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), place)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            yield child, place
        else:
            yield from _walk(child, place)


def upward(found: list[Import]) -> list[Import]:
    """Imports of a package from a higher layer or a peer of the same layer."""
    bad = []
    for imp in found:
        src, dst = package_of(imp.source), package_of(imp.target)
        if src == dst:
            continue
        if layer_of(dst) >= layer_of(src):
            bad.append(imp)
    return bad


def cycles(found: list[Import]) -> list[list[str]]:
    """Strongly connected groups of modules (every kind of import counts)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return groups


def function_imports(found: list[Import]) -> list[Import]:
    """adaptlab imports inside functions outside ``cli/`` and the package root."""
    return [i for i in found if i.place == "function" and package_of(i.source) not in {"cli", *TOP}]


def main() -> None:
    found = imports()
    up = upward(found)
    inside = function_imports(found)
    allowed = [i for i in inside if (i.source, i.target) in FUNCTION_IMPORTS_ALLOWED]
    outside_cli = [i for i in found if package_of(i.source) not in {"cli", *TOP}]
    print(f"adaptlab imports: {len(found)} ({len(outside_cli)} outside cli/)")
    print(
        f"inside functions: {sum(i.place == 'function' for i in found)} in all, "
        f"{len(inside)} outside cli/ ({len(allowed)} allow-listed)"
    )
    print(f"upward imports: {len(up)}")
    groups = cycles(found)
    print(f"cycles: {len(groups)}")
    if "-v" in sys.argv:
        for i in up:
            print(f"  up: {i.source}:{i.line} -> {i.target} [{i.place}]")
        for g in groups:
            print("  cycle:", " ".join(g))
        if "-vv" in sys.argv:
            for i in inside:
                print(f"  in function: {i.source}:{i.line} -> {i.target}")


if __name__ == "__main__":
    main()
