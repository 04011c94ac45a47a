"""Model files a run logged that are not MLflow models (`booster.save_model("model.txt")`, a
`production_model.pkl`): found by name so the import can point at them, and read, when the
operator names one with --artifact, by what the file's first bytes say it is."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from scoring.importing.errors import BrokenRun, UnservableModel
from scoring.importing.model_forms import ModelFile

# Files of these kinds are models whatever their name.
MODEL_SUFFIXES = (
    ".pkl",
    ".pickle",
    ".joblib",
    ".jbl",
    ".skops",
    ".lgb",
    ".lgbm",
    ".cloudpickle",
    ".model",
    ".booster",
)
# Text and JSON files only when the name says model: runs log plenty of other text.
NAMED_SUFFIXES = (".txt", ".json")
MODEL_WORDS = ("model", "booster", "lgb", "lightgbm")
JOBLIB_SUFFIXES = (".joblib", ".jbl")
# joblib.dump(..., compress=...) writes a zlib, gzip, bz2, xz or lzma stream.
_COMPRESSED_MAGIC = (b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00")


def is_model_like(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(MODEL_SUFFIXES):
        return True
    return name.endswith(NAMED_SUFFIXES) and any(word in name for word in MODEL_WORDS)


def model_like_files(client: MlflowClient, run_id: str) -> list[str]:
    """Model-like files at the run's artifact root and one folder down, leaving out MLflow
    model folders (their model.pkl is the MLflow model's own)."""
    found: list[str] = []
    for item in client.list_artifacts(run_id):
        if not item.is_dir:
            found += [item.path] if is_model_like(item.path) else []
            continue
        inside = client.list_artifacts(run_id, item.path)
        if any(entry.path.endswith("/MLmodel") for entry in inside):
            continue
        found += [entry.path for entry in inside if not entry.is_dir and is_model_like(entry.path)]
    return sorted(found)


def _is_lightgbm_text(head: bytes) -> bool:
    return head.startswith(b"tree\n") or head.startswith(b"tree\r\n")


def sniff(local: Path, artifact_path: str) -> ModelFile:
    """What kind of model file this is, from its first bytes (reading them runs nothing)."""
    source = f"artifact:{artifact_path}"
    with local.open("rb") as handle:
        head = handle.read(64)
    name = local.name.lower()
    if _is_lightgbm_text(head):
        return ModelFile(local, "lightgbm-text", source)
    if head.lstrip().startswith(b"{"):
        try:
            dumped = json.loads(local.read_bytes())
        except ValueError:
            dumped = None
        if isinstance(dumped, dict) and "tree_info" in dumped:
            # LightGBM writes this JSON (booster.dump_model()) but has no reader for it.
            raise UnservableModel(
                f"{artifact_path} is a LightGBM dump_model() JSON, which LightGBM cannot load "
                "back; log booster.save_model('model.txt') and import that"
            )
        raise UnservableModel(f"{artifact_path} is JSON but not a LightGBM model")
    if head.startswith(b"PK\x03\x04"):
        return ModelFile(local, "skops", source)
    if name.endswith(JOBLIB_SUFFIXES) or head.startswith(_COMPRESSED_MAGIC):
        return ModelFile(local, "joblib", source)
    if head.startswith(b"\x80") or name.endswith((".pkl", ".pickle", ".cloudpickle")):
        return ModelFile(local, "pickle", source)
    if not head:
        raise BrokenRun(f"{artifact_path} is empty")
    raise UnservableModel(
        f"{artifact_path} is not a model file the import reads (LightGBM text, skops, pickle "
        "or joblib)"
    )


def download_artifact(
    run_id: str, artifact_path: str, destination: Path, tracking_uri: str
) -> Path:
    """The run's file at `artifact_path`, downloaded; refused when the run has no such file."""
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact_path,
            dst_path=str(destination),
            tracking_uri=tracking_uri,
        )
    except Exception as error:  # a missing file, a dropped connection: nothing to import
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise BrokenRun(
            f"cannot download --artifact {artifact_path} of run {run_id}: {reason}"
        ) from None
    return Path(local)
