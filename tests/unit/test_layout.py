"""The layers hold: the core does no I/O, and no module imports itself back.

Read from the source with :mod:`ast`, so nothing here depends on what a test
run happened to import. ``core/`` is the pure core (h11's rule: the state
machine imports no I/O): values and ``now`` in, decisions out.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "toma"
CORE = PACKAGE / "core"

# Layers the core must not reach into: they hold the store, the network, the
# files, the loop and the terminal.
SHELL = (
    "toma.store",
    "toma.transports",
    "toma.inbox",
    "toma.daemon",
    "toma.cli",
    "toma.web",
    "toma.reports",
    "toma.project",
)
# Standard and third-party modules whose import means I/O or the clock.
IO_MODULES = frozenset(
    {
        "asyncio",
        "glob",
        "http",
        "imaplib",
        "multiprocessing",
        "os",
        "pathlib",
        "select",
        "selectors",
        "shutil",
        "smtplib",
        "socket",
        "sqlite3",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "aiosmtplib",
        "click",
        "h11",
        "imapclient",
        "rich",
        "schedule",
        "tinydb",
        "uvloop",
    }
)
# Calls that read the clock or touch the disk, by their last two names.
IO_CALLS = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("time", "time"),
        ("time", "monotonic"),
        ("time", "perf_counter"),
    }
)
IO_METHODS = frozenset(
    {
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "mkdir",
        "unlink",
        "iterdir",
        "glob",
        "rglob",
        "is_dir",
        "is_file",
    }
)


def modules(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST, *, module_level: bool) -> Iterator[ast.AST]:
    """Every node that runs, leaving out ``if TYPE_CHECKING:`` blocks.

    With ``module_level``, the bodies of functions are left out too: they
    import when called, not when the module is imported.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if module_level and isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                continue
            stack.append(child)


def imported(node: ast.AST, module: str) -> list[str]:
    """The absolute names an import statement brings in (a module, or module.name)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".")[: -node.level]
            base = ".".join([*package, *([base] if base else [])])
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def _dotted(node: ast.expr) -> tuple[str, ...]:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return tuple(reversed(names))


def impurities(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in _runtime_nodes(tree, module_level=False):
        line = getattr(node, "lineno", 0)
        for name in imported(node, module):
            top = name.split(".")[0]
            if top in IO_MODULES:
                found.append(f"{path.name}:{line} imports {name}")
            if any(name == layer or name.startswith(layer + ".") for layer in SHELL):
                found.append(f"{path.name}:{line} imports {name} from the shell")
        if isinstance(node, ast.Call):
            called = _dotted(node.func)
            if called == ("open",):
                found.append(f"{path.name}:{line} calls open()")
            if len(called) >= 2 and called[-2:] in IO_CALLS:
                found.append(f"{path.name}:{line} reads the clock: {'.'.join(called)}()")
            if len(called) >= 2 and called[-1] in IO_METHODS:
                found.append(f"{path.name}:{line} touches the disk: .{called[-1]}()")
    return sorted(set(found))


CORE_MODULES = list(modules(CORE))


def test_the_core_is_where_it_is_said_to_be() -> None:
    names = {name for name, _ in CORE_MODULES}
    assert {"toma.core.planner", "toma.core.reading.decide", "toma.core.agenda"} <= names


@pytest.mark.parametrize(("module", "path"), CORE_MODULES, ids=[m for m, _ in CORE_MODULES])
def test_a_core_module_touches_no_store_network_disk_or_clock(module: str, path: Path) -> None:
    """Values and ``now`` in, decisions out: the shell does the reading and writing."""
    assert impurities(module, path) == []


def test_the_purity_check_sees_what_it_forbids(tmp_path: Path) -> None:
    """The check above would catch each kind of impurity (it is not vacuous)."""
    source = tmp_path / "impure.py"
    source.write_text(
        "import os\n"
        "from pathlib import Path\n"
        "from toma.store import Store\n"
        "from datetime import datetime\n"
        "def f(p):\n"
        "    from toma.daemon import worker\n"
        "    open('x')\n"
        "    p.read_text()\n"
        "    return datetime.now()\n"
    )
    found = impurities("toma.core.impure", source)
    assert any("imports os" in f for f in found)
    assert any("imports pathlib" in f for f in found)
    assert any("toma.store" in f and "shell" in f for f in found)
    assert any("toma.daemon" in f for f in found)
    assert any("open()" in f for f in found)
    assert any("read_text" in f for f in found)
    assert any("datetime.now" in f for f in found)


# --------------------------------------------------------------------------- cycles


def import_graph() -> dict[str, set[str]]:
    """Module -> the toma modules it imports when it is imported.

    Only imports that run at import time count: those at module level (also
    inside ``try``/``if``), not those inside functions, nor those under ``if
    TYPE_CHECKING:``. ``from toma.x import y`` counts as importing ``toma.x.y``
    when ``y`` is a module, else ``toma.x``; ``import toma.a.b`` and ``from
    toma.a.b import c`` count as importing ``toma.a.b`` only, not the package
    ``toma.a`` that Python runs first (the rule import-linter follows): a
    package's ``__init__`` may gather its modules' names.
    """
    known = dict(modules(PACKAGE))
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in _runtime_nodes(tree, module_level=True):
            names = imported(node, module)
            if isinstance(node, ast.ImportFrom):
                # from package import module: the module; from module import name: the module.
                base, *members = names
                found = [name for name in members if name in known]
                names = found if len(found) == len(members) else [base, *found]
            targets.update(name for name in names if name in known)
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back() -> None:
    """No import cycle among toma's modules: each layer can be read bottom up."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_graph_sees_toma_modules() -> None:
    graph = import_graph()
    assert "toma.core.agenda" in graph["toma.daemon.worker"]
    assert "toma.store.base" in graph["toma.store.records.contacts"]


# What the core may reach through its imports, directly or not: itself, and the
# plain values and helpers every layer shares.
CORE_MAY_REACH = ("toma.core", "toma.errors", "toma.timeutil", "toma.config", "toma.hosts")


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every toma module ``start`` imports at import time, directly or through others."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_the_core_reaches_nothing_above_it_even_indirectly() -> None:
    """A core module that imports a mail or project module would bring in what *they*
    import: the check above sees only a module's own lines, this one the whole chain."""
    graph = import_graph()
    above = {
        module: sorted(
            name
            for name in reached(graph, module)
            if not any(name == ok or name.startswith(ok + ".") for ok in CORE_MAY_REACH)
        )
        for module, _path in CORE_MODULES
    }
    assert {module: names for module, names in above.items() if names} == {}


def test_the_reach_check_follows_chains() -> None:
    graph = {"toma.core.a": {"toma.core.b"}, "toma.core.b": {"toma.mail.render"}}
    assert reached(graph, "toma.core.a") == {"toma.core.b", "toma.mail.render"}


# --------------------------------------------------------------------------- the README's map


def test_the_readme_names_every_folder_and_only_real_ones() -> None:
    """ "How the code is laid out" has one row per package folder, and no other."""
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w/]+)/` \|", section, re.MULTILINE)
    folders = {
        path.parent.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("__init__.py")
        if path.parent != PACKAGE
    }
    assert set(rows) == {"toma"} | folders
