"""Write a checked model into the Bento model store, once per (model, threshold)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bentoml
import lightgbm as lgb
from bentoml.exceptions import NotFound

from scoring.importing.booster_contract import SIGNATURE
from scoring.importing.errors import UnservableModel
from scoring.stored_model import compiled as compiled_forest
from scoring.stored_model.layout import (
    BOOSTER_FILE,
    CHECKSUMS_KEY,
    COMPILED_FILE,
    PROBE_FILE,
    file_sha256,
)


def bento_tag(
    name: str,
    model_uri: str,
    threshold: float,
    model_version: str,
    compiled: bool = False,
    reason_codes_sha256: str = "",
    reference_sha256: str = "",
    contract_source: str = "",
) -> str:
    """Deterministic, so importing the same model version with the same threshold (and the same
    choice of compiling, the same reason-code table and the same drift reference sample) is a
    no-op."""
    key = f"{model_uri}|{threshold!r}" + (f"|{compiled_forest.TARGET_CPU}" if compiled else "")
    key += f"|reasons={reason_codes_sha256}" if reason_codes_sha256 else ""
    key += f"|reference:{reference_sha256}" if reference_sha256 else ""
    # A contract taken from the booster is another request schema for the same model file.
    key += f"|contract:{contract_source}" if contract_source not in ("", SIGNATURE) else ""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    prefix = f"v{model_version}" if model_version else "run"
    return f"{name}:{prefix}-{digest}"


def existing(tag: str) -> bentoml.Model | None:
    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def save_booster(
    tag: str,
    booster: lgb.Booster,
    labels: dict[str, str],
    metadata: dict[str, Any],
    compile_forest: bool = False,
    files: Mapping[str, bytes] | None = None,
) -> bentoml.Model:
    """BentoML writes into a temporary folder and moves it into the store only on success,
    so an interrupted import (or a compiled forest that disagrees with the booster) leaves no
    half-written model behind. `files`: further files by name (the reason-code table, the drift
    reference), stored
    and checksummed like the booster."""
    labels = {**labels, "compiled_forest": compiled_forest.TARGET_CPU if compile_forest else "no"}
    if compile_forest:
        metadata = {**metadata, "compiled_forest": compiled_forest.metadata()}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        booster_file = Path(model.path_of(BOOSTER_FILE))
        booster.save_model(booster_file)
        if compile_forest:
            _compile_and_check(
                booster_file, Path(model.path_of(COMPILED_FILE)), Path(model.path_of(PROBE_FILE))
            )
        for name, content in (files or {}).items():
            Path(model.path_of(name)).write_bytes(content)
        written = [
            name
            for name in (BOOSTER_FILE, COMPILED_FILE, PROBE_FILE, *(files or {}))
            if Path(model.path_of(name)).exists()
        ]
        model.info.metadata[CHECKSUMS_KEY] = {
            name: file_sha256(Path(model.path_of(name))) for name in written
        }
    return bentoml.models.get(tag)


def _compile_and_check(booster_file: Path, out: Path, probe_file: Path) -> None:
    try:
        compiled_forest.compile_forest(booster_file, out)
        saved = lgb.Booster(model_file=str(booster_file))
        forest = compiled_forest.load_forest(booster_file, out, saved)
        probes = compiled_forest.probe_rows(saved)
        compiled_forest.check_matches_booster(forest, saved, probes)
        compiled_forest.save_probe_rows(probes, probe_file)
    except (RuntimeError, OSError) as error:
        raise UnservableModel(f"--compile failed: {error}") from error
