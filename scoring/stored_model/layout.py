"""The files inside a stored Bento model, named once for the importer and the service."""

from __future__ import annotations

import hashlib
from pathlib import Path

# LightGBM's own text format: no pickle, readable by any LightGBM version >= 4.
BOOSTER_FILE = "model.txt"
# The forest compiled to machine code by lleaves (import_model.py --compile), when present.
COMPILED_FILE = "forest.o"
# Beside it, the rows the compiled forest is checked against the booster on (compiled.probe_rows,
# float64, NumPy's format, read without pickle): drawn at import, so a worker that loads the
# model does not walk every tree again (0.85 s of a Spark worker's 1.4 s load, measured on the
# full-size model 2026-12-07).
PROBE_FILE = "forest_probe.npy"
# Metadata key: each model file's SHA-256 at import, checked before the service loads it (a
# truncated model.txt can crash LightGBM's parser outright instead of raising an error).
CHECKSUMS_KEY = "file_sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A Pipeline's steps before its classifier (scoring/core/preprocessing.py), written by skops at
# import whatever the team logged (so serving never unpickles), read back trusting only the
# steps of scoring/stored_model/pipeline_steps.py.
PREPROCESSING_FILE = "preprocessing.skops"
