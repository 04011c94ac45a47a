"""The Bento model's folder, sent to every executor by Spark's own mechanism: packed once per
driver process into a .tar.gz and added with `SparkContext.addArchive`, which each executor
fetches and unpacks once, into its working directory (`SparkFiles.get(name)`). No shared
filesystem or Bento store is needed on the executors."""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import bentoml
from pyspark import SparkContext

# (application id, model tag) → the archive's name: a context takes each archive once (a
# second addArchive under the same name is refused), and a tag names immutable files.
_SHIPPED: dict[tuple[str, str], str] = {}
_PACKED: dict[str, Path] = {}  # tag → its archive, kept for the process's life (served from it)


def archive_name(tag: str) -> str:
    return tag.replace(":", "-") + ".tar.gz"


def _packed(bento_model: bentoml.Model) -> Path:
    tag = str(bento_model.tag)
    if tag not in _PACKED:
        folder = Path(tempfile.mkdtemp(prefix="portfolio-model-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        archive = folder / archive_name(tag)
        # Gzip level 1: the booster text and object file are packed in a second or two; the
        # archive crosses the network once per executor.
        with tarfile.open(archive, "w:gz", compresslevel=1) as packed:
            packed.add(bento_model.path, arcname=".")
        _PACKED[tag] = archive
    return _PACKED[tag]


def ship(context: SparkContext, bento_model: bentoml.Model) -> str:
    """Make the model's folder available to this context's executors; returns its name."""
    key = (context.applicationId, str(bento_model.tag))
    if key not in _SHIPPED:
        archive = _packed(bento_model)
        context.addArchive(str(archive))
        _SHIPPED[key] = archive.name
    return _SHIPPED[key]


def ship_code(context: SparkContext) -> None:
    """The `scoring` package the driver runs, zipped onto the executors' path (addPyFile): the
    executors score with the driver's code, whatever their image holds."""
    if (context.applicationId, "code") in _SHIPPED:
        return
    package = Path(__file__).resolve().parent.parent
    folder = Path(tempfile.mkdtemp(prefix="portfolio-code-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = folder / "scoring_code.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed:
        for source in sorted(package.rglob("*.py")):
            packed.write(source, str(source.relative_to(package.parent)))
    context.addPyFile(str(archive))
    _SHIPPED[(context.applicationId, "code")] = archive.name
