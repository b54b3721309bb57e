"""The layers of ``src/batsnn``, read from the source (``ast``), nothing imported:

- the library never imports the runner: no module outside ``batsnn/experiments/`` and
  ``batsnn/cli.py`` imports ``batsnn.experiments``, at the top or inside a function;
- no two modules import each other, directly or through others (function-level imports
  count: a lazy import hides a cycle, it does not remove it).

An import's target is the module it names (``from batsnn.export import nir`` names
``batsnn.export.nir``, ``from batsnn.nn import LIFLinear`` names ``batsnn.nn``); imports under
``if TYPE_CHECKING:`` are not run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "batsnn"
RUNNER = "batsnn.experiments"
MAY_IMPORT_RUNNER = ("batsnn.experiments", "batsnn.cli")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``batsnn.x.y`` of ``root/x/y.py`` (``batsnn.x`` of ``root/x/__init__.py``)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else (
                test.attr if isinstance(test, ast.Attribute) else None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    skip.update(id(n) for n in ast.walk(sub))
    return skip


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> dict[str, int]:
    """The package modules that the file ``path`` imports anywhere (module level or inside
    functions), each with the line of its first import."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_nodes(tree)
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        while name and name not in modules:  # an attribute of a module: the module
            name = name.rpartition(".")[0]
        if name and name != me:
            found.setdefault(name, line)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                add(sub if sub in modules else target, node.lineno)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported package module: line} for every module under ``root``."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, modules, root) for f in files}


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm, iterative), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def describe_cycle(graph: dict[str, dict[str, int]], comp: list[str]) -> str:
    """The imports inside one cycle, ``a -> b (line n)``, one per line."""
    return "\n".join(f"  {a} -> {b} (line {line})" for a in comp
                     for b, line in sorted(graph[a].items()) if b in comp)


# ----------------------------------------------------------------------------- the checker

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "batsnn"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "from batsnn.nn import Net\n",
        "nn.py": "def f():\n    from . import lib\n",
        "lib.py": "import os\nif TYPE_CHECKING:\n    from batsnn import nn\n",
        "experiments/__init__.py": "",
        "experiments/model.py": "from ..lib import x\n",
        "export/__init__.py": "",
        "export/cli.py": "def g():\n    from batsnn.experiments.model import load\n",
    })
    g = import_graph(root)
    assert g["batsnn"] == {"batsnn.nn": 1}
    assert g["batsnn.nn"] == {"batsnn.lib": 2}
    assert g["batsnn.lib"] == {}  # TYPE_CHECKING imports are not run
    assert g["batsnn.experiments.model"] == {"batsnn.lib": 1}
    assert g["batsnn.export.cli"] == {"batsnn.experiments.model": 2}
    assert cycles(g) == []


def test_the_checker_finds_cycles(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "import batsnn.b\n",
        "b.py": "def f():\n    from batsnn import c\n",
        "c.py": "from batsnn.a import thing\n",
        "d.py": "import batsnn.a\n",
        "e.py": "import batsnn.e\n",  # itself: not a cycle between modules
    })
    g = import_graph(root)
    assert cycles(g) == [["batsnn.a", "batsnn.b", "batsnn.c"]]
    assert "batsnn.b -> batsnn.c (line 2)" in describe_cycle(g, cycles(g)[0])


# ----------------------------------------------------------------------------- the source

def test_the_library_never_imports_the_runner():
    graph = import_graph()
    assert "batsnn.experiments.runs" in graph and "batsnn.export.nir" in graph
    bad = [f"{m} imports {t} (line {line})" for m, targets in sorted(graph.items())
           if not any(m == p or m.startswith(p + ".") for p in MAY_IMPORT_RUNNER)
           for t, line in sorted(targets.items())
           if t == RUNNER or t.startswith(RUNNER + ".")]
    assert not bad, "library modules import the runner:\n" + "\n".join(bad)


def test_no_import_cycles_in_src():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"cycle {i + 1}: {', '.join(c)}\n{describe_cycle(graph, c)}"
        for i, c in enumerate(found))
