"""The files inside a stored Bento model, named once for the importer and the service."""

from __future__ import annotations

# LightGBM's own text format: no pickle, readable by any LightGBM version >= 4.
BOOSTER_FILE = "model.txt"
# The forest compiled to machine code by lleaves (import_model.py --compile), when present.
COMPILED_FILE = "forest.o"
