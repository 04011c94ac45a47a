"""bentofile.yaml against what the service really imports, both ways: a module missing from
`include` only fails inside the built image, and a module shipped but never imported (the
importer, the demo store) is weight the image should not carry. Checked without building one."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pathspec import PathSpec  # what BentoML matches `include` with

from loadtest.processes import ROOT

PROJECT_PACKAGES = ("scoring", "service")


def shipped_files() -> set[str]:
    """The project's files `bentoml build` would copy, by the bentofile's own patterns."""
    include = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["include"]
    spec = PathSpec.from_lines("gitwildmatch", include)
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {path for path in tracked if spec.match_file(path)}


def module_file(module: str) -> str | None:
    base = Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (ROOT / candidate).exists():
            return candidate.as_posix()
    return None


def project_imports(path: str) -> set[str]:
    """Every project module `path` imports, at the top or inside a function (lazily), with the
    packages that hold them."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from scoring.x import y`: y may be a module of its own or a name in scoring.x
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT_PACKAGES:
                parts = name.split(".")
                modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {file for module in modules if (file := module_file(module))}


def reachable_from(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(project_imports(path) - seen)
    return seen


def test_bentofile_ships_exactly_the_modules_the_service_imports():
    shipped = {path for path in shipped_files() if path.endswith(".py")}
    needed = reachable_from("service.py")
    assert "scoring/serving/edge/settings.py" in needed  # the walk follows the package's imports
    assert needed - shipped == set(), "add these to bentofile.yaml's include"
    assert shipped - needed == set(), "the image would carry these, which serving never imports"
    assert not any(path.startswith(("scoring/importing/", "demo_store/")) for path in shipped)


SERVE_EVERY_ROUTE = """
import sys
from pathlib import Path
from starlette.testclient import TestClient
import service
with TestClient(service.CreditScoring.to_asgi()) as client:
    row = service.EXAMPLE
    table = {"columns": list(row), "data": [list(row.values())]}
    for path, body in [("/predict", {"applications": [row]}),
                       ("/predict_compact", {"table": table}),
                       ("/explain", {"applications": [row]})]:
        assert client.post(path, json=body).status_code == 200, path
    assert client.get("/version").status_code == 200
root = Path.cwd().resolve()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and Path(path).resolve().is_relative_to(root):
        print(Path(path).resolve().relative_to(root))
"""


def test_the_service_serves_from_only_what_the_bentofile_ships(
    production_model, bentoml_home, tmp_path
):
    """Run every route from a copy holding just the shipped files: a lazily imported module the
    bentofile misses fails here, as it would in the image."""
    for path in shipped_files():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_EVERY_ROUTE],
        cwd=tmp_path,
        env={**env, "BENTOML_HOME": str(bentoml_home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"the shipped files alone cannot serve:\n{result.stderr[-3000:]}")
    imported = set(result.stdout.split())
    assert "scoring/serving/edge/settings.py" in imported
    assert imported <= shipped_files()
