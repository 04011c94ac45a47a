"""MLflow signature column types as the importer records them and the service reads them."""

from __future__ import annotations

# Whole-number columns: required (no missing value) and integral in every request. Booleans are
# LightGBM's 0/1, so they count here too.
INTEGER_TYPES = frozenset({"long", "integer", "boolean"})
