"""bentofile.yaml against what the service really imports: a module missing from `include`
only fails inside the built image, so catch it here, without building one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.servers import ROOT

LIST_PROJECT_MODULES = """
import sys
from pathlib import Path
import service
root = Path.cwd().resolve()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and Path(path).resolve().is_relative_to(root):
        print(Path(path).resolve().relative_to(root))
"""


def test_bentofile_includes_every_project_module_the_service_imports(
    production_model, bentoml_home
):
    result = subprocess.run(
        [sys.executable, "-c", LIST_PROJECT_MODULES],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(bentoml_home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = {line for line in result.stdout.splitlines() if not line.startswith(".venv")}
    assert "service.py" in imported
    assert "scoring/settings.py" in imported
    included = set(yaml.safe_load((Path(ROOT) / "bentofile.yaml").read_text())["include"])
    assert imported - included == set(), "add these to bentofile.yaml's include"
