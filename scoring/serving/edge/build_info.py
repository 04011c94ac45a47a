"""Which build is running: git revision and build time, baked into the Bento at build time
(`build_info.json`, written by env/build_image.sh), or read from git when serving from source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# The project root (scoring/serving/edge/ → three levels up), where the build writes it.
BUILD_INFO_FILE = Path(__file__).resolve().parents[3] / "build_info.json"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, check=True,
            cwd=BUILD_INFO_FILE.parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


def build_info() -> dict[str, str]:
    if BUILD_INFO_FILE.exists():
        return json.loads(BUILD_INFO_FILE.read_text())
    revision = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {
        "revision": revision + ("-dirty" if dirty else ""),
        "build_time": "",
        "source": "git checkout (not a built Bento)",
    }
