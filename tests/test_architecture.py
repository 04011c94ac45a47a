"""The tree is the architecture: which room may import which, and no import circles.

A test of our own rather than import-linter: the rules are a dozen lines, read from the source
with `ast` (every import, including the ones inside functions, which import-linter's static
graph also counts), and a new dependency for CI would buy nothing more. Rooms are listed top
to bottom; a room may import only the rooms it names (and itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Room → the rooms it may import. The request path runs downward: the HTTP edge → the request
# forms → monitoring → the bulk lane; all of them score through the core, which reads the
# stored model's files and knows nothing of HTTP.
_BELOW_THE_EDGE = {
    "scoring.serving.shadow",
    "scoring.serving.edge.settings",
    "scoring.serving.forms",
    "scoring.serving.monitoring",
    "scoring.serving.batching",
    "scoring.bentoml_patches",
    "scoring.core",
    "scoring.stored_model",
}
ALLOWED: dict[str, set[str]] = {
    # The service is the edge's only caller: it may import all the edge may, and the edge.
    "service": {"scoring.serving.edge", *_BELOW_THE_EDGE},
    "scoring.serving.edge": _BELOW_THE_EDGE,
    "scoring.serving.forms": {"scoring.bentoml_patches", "scoring.core", "scoring.stored_model"},
    "scoring.serving.monitoring": {
        "scoring.serving.batching",
        "scoring.core",
        "scoring.stored_model",
    },
    # The challenger's lane scores through the core, after the answer, at the bulk lane's
    # priority.
    "scoring.serving.shadow": {"scoring.serving.batching", "scoring.core", "scoring.stored_model"},
    "scoring.serving.batching": set(),
    "scoring.bentoml_patches": set(),
    "scoring.core": {"scoring.stored_model"},
    "scoring.stored_model": set(),
    # The importer runs the service's own self-test on what it imports (the request form that
    # validates the model's example), so whatever imports also serves.
    "scoring.importing": {"scoring.serving.forms", "scoring.core", "scoring.stored_model"},
    # The portfolio job (Spark) scores through the core; it reads the service's settings (the
    # threshold override, the unseen-category policy, the default model tag: one settings
    # object, so the job decides as the service does) and runs the service's self-test on the
    # model it loads (the request form for its example), as the importer does. No other part
    # of the HTTP edge.
    "scoring.portfolio": {
        "scoring.serving.edge.settings",
        "scoring.serving.forms",
        "scoring.core",
        "scoring.stored_model",
    },
    # The settings module alone, below the rest of the edge: the portfolio may read it.
    "scoring.serving.edge.settings": {"scoring.serving.forms"},
    "import_model": {"scoring.importing"},
    "demo_store": {"scoring.importing", "scoring.stored_model"},
}
PROJECT = ("service", "import_model", "scoring", "loadtest", "demo_store")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [ROOT / "service.py", ROOT / "import_model.py"]
    for package in ("scoring", "loadtest", "demo_store"):
        files += sorted((ROOT / package).rglob("*.py"))
    return {module_name(path): path for path in files}


MODULES = project_modules()


def imports_of(path: Path) -> set[str]:
    """The project modules `path` imports, anywhere in the file: `from a.b import c` counts as
    a.b.c when that is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PROJECT)
    return found


def room_of(module: str) -> str | None:
    rooms = [room for room in ALLOWED if module == room or module.startswith(room + ".")]
    return max(rooms, key=len, default=None)


def test_every_shipped_module_belongs_to_a_room():
    roomless = [m for m in MODULES if m.split(".")[0] in ("scoring", "service") and not room_of(m)]
    # The two packages' __init__.py hold only their docstrings; every other module is in a room.
    assert roomless == ["scoring", "scoring.serving"]


def test_rooms_import_only_the_rooms_below_them():
    wrong = []
    for module, path in MODULES.items():
        room = room_of(module)
        if room is None:
            continue
        for imported in imports_of(path):
            target = room_of(imported)
            if target not in (None, room) and target not in ALLOWED[room]:
                wrong.append(f"{module} imports {imported} ({room} → {target})")
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path):
    """The check reads real imports: the core importing the HTTP edge is found."""
    upward = tmp_path / "upward.py"
    upward.write_text("def f():\n    from scoring.serving.edge.settings import Settings\n")
    imported = imports_of(upward)
    assert imported == {"scoring.serving.edge.settings"}
    assert room_of("scoring.serving.edge.settings") not in ALLOWED["scoring.core"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        # A package's submodule imports its package's __init__ implicitly: not an edge.
        graph[module] = {m for m in imports_of(path) if m in MODULES and m != module}
    return graph


def test_no_module_imports_itself_back_through_others():
    assert _cycles(module_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"a"}}, [["a", "b"]]), ({"a": {"b"}, "b": set()}, [])],
)
def test_the_cycle_check_finds_a_circle(graph, expected):
    assert _cycles(graph) == expected


def test_no_request_path_module_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "scoring").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
