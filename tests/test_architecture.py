"""The shape of the package: every module imports on its own, no import cycles, layers, module sizes.

The layers, lowest first (a module may import its own layer and the layers below it,
never one above)::

    base (_validation, config, _table) < numerics < theory < search < codebooks < codecs
        < kv, gpu < proofs < experiments < cli

The root ``fibquant_theory/__init__.py`` is the public facade and may import anything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fibquant_theory"
#: where each installed subpackage lives in the repository (pyproject's package-dir)
FOLDERS = {PACKAGE: ROOT / "fibquant_theory", f"{PACKAGE}.gpu": ROOT / "gpu", f"{PACKAGE}.proofs": ROOT / "proofs"}
BASE = ("_validation", "config", "_table")
LAYERS = ("numerics", "theory", "search", "codebooks", "codecs", ("kv", "gpu"), "proofs", "experiments", "cli")
#: "about 600 lines" (issue #14): the limit every module of the package stays under
MAX_LINES = 600


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return len(LAYERS)  # the facade and ``python -m fibquant_theory``
    if parts[1] in BASE:
        return -1
    for i, layer in enumerate(LAYERS):
        if parts[1] in ((layer,) if isinstance(layer, str) else layer):
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_architecture.py")


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, and its source file."""
    found: dict[str, Path] = {}
    for prefix, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == PACKAGE and parts and parts[0] in ("gpu", "proofs"):
                continue
            found[name] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, list[tuple[str, bool]]]:
    """``module -> [(imported package module, at module level?)]`` for imports inside the package."""
    graph: dict[str, list[tuple[str, bool]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, ast.If) for n in s.body + s.orelse}
        edges = []
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    edges.append((target, id(node) in top))
        graph[name] = edges
    return graph


def layer_violations(graph: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Every import of a higher layer, or of the facade, as a sentence."""
    bad = []
    for name, edges in sorted(graph.items()):
        for target, _ in edges:
            if target == PACKAGE:
                bad.append(f"{name} imports the facade {PACKAGE} (import the module that defines the name)")
            elif _rank(target) > _rank(name):
                bad.append(f"{name} (layer {_rank(name)}) imports {target} (layer {_rank(target)})")
    return bad


def find_cycles(graph: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    """Cycles of module-level imports (depth-first search; each cycle once per back edge)."""
    adjacency = {name: sorted({t for t, top in edges if top and t != PACKAGE}) for name, edges in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in adjacency.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(adjacency):
        if node not in state:
            visit(node)
    return cycles


def test_every_module_is_in_a_layer_and_imports_only_downwards() -> None:
    modules = _modules()
    assert len(modules) > 40, sorted(modules)
    bad = layer_violations(_imports(modules))
    assert not bad, "\n".join(bad)


def test_no_import_cycle() -> None:
    cycles = find_cycles(_imports(_modules()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_find_a_cycle_and_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above are not vacuous: a two-module cycle and an upward import are reported."""
    pkg = tmp_path / "fibquant_theory"
    (pkg / "numerics").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "numerics" / "__init__.py").write_text("")
    (pkg / "numerics" / "a.py").write_text("from fibquant_theory.numerics.b import x\n")
    (pkg / "numerics" / "b.py").write_text("from . import a\n\n\ndef f():\n    from fibquant_theory.cli import y\n")
    (pkg / "cli.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "FOLDERS", {PACKAGE: pkg})
    graph = _imports(_modules())
    assert find_cycles(graph) == [
        ["fibquant_theory.numerics.a", "fibquant_theory.numerics.b", "fibquant_theory.numerics.a"]
    ]
    assert layer_violations(graph) == [
        "fibquant_theory.numerics.b (layer 0) imports fibquant_theory.cli (layer 8)"
    ]


_IMPORT_EACH = r"""
import importlib, json, sys, traceback
names, packages = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))


def fresh(name):
    for loaded in [m for m in sys.modules if m == "fibquant_theory" or m.startswith("fibquant_theory.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
    return {m for m in sys.modules if m.startswith("fibquant_theory")}


failed, covered, imported = {}, {}, []
for name in names:
    parent = name.rpartition(".")[0]
    if name not in packages and parent:
        # importing a module first runs its parents' __init__; when they already load it, that is its first import
        if parent not in covered:
            try:
                covered[parent] = fresh(parent)
            except Exception:
                covered[parent] = set()
        if name in covered[parent]:
            continue
    try:
        loaded = fresh(name)
        if name in packages:
            covered[name] = loaded
    except Exception:
        failed[name] = traceback.format_exc(limit=4)
    imported.append(name)
print(json.dumps({"failed": failed, "imported": imported}))
"""


def test_every_module_imports_on_its_own() -> None:
    """Each module is imported first, with no other module of the package loaded (an import cycle fails here).

    Importing a module first runs its parent packages' ``__init__``; a module they
    already load has had its first import there (the order is fixed), so only the
    packages and the modules their ``__init__`` leaves out are imported on their own.
    Two interpreters share them (CI has two cores); each one forgets the whole
    package before every import.
    """
    modules = {n: p for n, p in _modules().items() if not n.endswith("__main__")}
    names = sorted(modules)
    packages = sorted(n for n, p in modules.items() if p.name == "__init__.py")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _IMPORT_EACH, json.dumps(names[i::2]), json.dumps(packages)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    failed: dict[str, str] = {}
    imported: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        failed.update(report["failed"])
        imported += report["imported"]
    assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items())
    # every package was imported on its own, and so was every module its parents do not load
    assert set(packages) <= set(imported), sorted(set(packages) - set(imported))
    assert any(n not in packages for n in imported), imported


def test_no_module_is_longer_than_the_limit() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_public_module_has_an_api_page() -> None:
    """The API reference (mkdocs.yml ``extra.api_modules``) lists every public module of the package."""
    lines = (ROOT / "mkdocs.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "api_modules:")
    listed = set()
    for line in lines[start + 1:]:
        if not line.strip().startswith("- "):
            break
        listed.add(line.strip()[2:].strip())
    public = {n for n in _modules() if not any(p.startswith("_") for p in n.split("."))}
    assert not public - listed, f"modules without an API page: {sorted(public - listed)}"
    assert not listed - public, f"API pages of modules that do not exist: {sorted(listed - public)}"
