"""Read a serialized model file without running code from whoever wrote it, unless the operator
said they trust the writer (--allow-pickle).

Unpickling (pickle, cloudpickle, joblib) calls whatever the file names: anyone who can write
to the tracking server can make an import run their code. A skops file is a zip holding a JSON
description of the objects; skops builds only the types it is told to trust. MLflow trusts the
types the MLmodel file lists, which the same writer controls, so we ignore that list and trust
a fixed one: what an LGBMClassifier is made of, beyond the numpy and scikit-learn types skops
trusts by itself.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from scoring.importing.errors import BrokenRun, UnsafeModelFile
from scoring.stored_model.pipeline_steps import EXTRA_SKOPS_TYPES, SERVED_STEPS

PICKLE_FORMATS = ("pickle", "cloudpickle", "joblib")

# What skops reports as untrusted in an LGBMClassifier (or a Booster) and nothing more: a
# fitted classifier's other state is numbers, strings, dicts and numpy arrays. A Pipeline adds
# the steps the service runs (scoring/stored_model/pipeline_steps.py), whose own state is
# numbers, category arrays, numpy ufuncs and the dtype an encoder names.
TRUSTED_SKOPS_TYPES = frozenset(
    {"collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"}
    | set(SERVED_STEPS)
    | set(EXTRA_SKOPS_TYPES)
)

ALLOW_PICKLE_HINT = (
    "unpickling runs any code its writer put in it (anyone who can write to the tracking "
    "server); re-log the model with skops or as a LightGBM booster, or pass --allow-pickle "
    "if you trust the run's writers"
)


def schema_of(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise BrokenRun(f"{path.name} is not a readable skops file: {error}") from None


def skops_class(path: Path) -> str:
    """The fully qualified class of the object a skops file holds, read from its schema
    without building anything."""
    schema = schema_of(path)
    return f"{schema.get('__module__', '?')}.{schema.get('__class__', '?')}"


def skops_pipeline_steps(path: Path) -> list[str]:
    """The class names of a skops-saved Pipeline's steps, read from its schema; [] when the
    schema is not laid out as skops writes a Pipeline."""
    try:
        steps = schema_of(path)["content"]["content"]["steps"]["content"]
        return [step["content"][1]["__class__"] for step in steps]
    except (KeyError, IndexError, TypeError):
        return []


def load_skops(path: Path) -> Any:
    """Build the object, trusting only TRUSTED_SKOPS_TYPES beyond skops' own defaults; any
    other type is refused by name before anything is built."""
    import skops.io

    try:
        untrusted = set(skops.io.get_untrusted_types(file=path))
    except Exception as error:  # a corrupt archive or schema: the file is unusable
        raise BrokenRun(f"{path.name} is not a readable skops file: {error}") from None
    refused = sorted(untrusted - TRUSTED_SKOPS_TYPES)
    if refused:
        raise UnsafeModelFile(
            f"{path.name} holds types outside the trusted list: {', '.join(refused)}; "
            "only a LightGBM classifier or booster, or a Pipeline of the served steps ending "
            "in one, is loaded from skops"
        )
    try:
        return skops.io.load(path, trusted=sorted(untrusted))
    except Exception as error:  # skops' own errors, or LightGBM's on a corrupt model string
        raise BrokenRun(f"{path.name} cannot be loaded: {error}") from None


def check_may_unpickle(path: Path, serialization: str, allow_pickle: bool) -> None:
    if serialization in PICKLE_FORMATS and not allow_pickle:
        raise UnsafeModelFile(f"{path.name} is a {serialization} file: {ALLOW_PICKLE_HINT}")


def load_pickled(path: Path, serialization: str, allow_pickle: bool) -> Any:
    """Unpickle, only when allowed. joblib.load reads plain pickles too (cloudpickle writes
    plain pickles), so it reads all three."""
    check_may_unpickle(path, serialization, allow_pickle)
    import joblib

    try:
        return joblib.load(path)
    except Exception as error:  # the file's own code may raise anything
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise BrokenRun(f"{path.name} cannot be unpickled: {reason}") from None
