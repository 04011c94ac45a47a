"""Where the result goes, safely: an existing output is refused unless overwriting is asked
for; the job writes into a staging folder beside the output (Spark's output committer: task
files under `_temporary` until the job commits, then `_SUCCESS`), its quarantine inside it,
and only a complete result is renamed into place. A failed job leaves no output behind.

Through Hadoop's FileSystem API, the one Spark writes with: the same code for a local path,
HDFS or an object store."""

from __future__ import annotations

import uuid

from pyspark.sql import SparkSession

QUARANTINE = "_quarantine"  # a leading underscore: Spark's and pyarrow's readers skip it


class OutputExists(FileExistsError):  # noqa: N818 - what the operator reads
    pass


class Target:
    def __init__(self, spark: SparkSession, path: str) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None  # a classic (not Connect) session: the driver has its JVM
        self._path_class = jvm.org.apache.hadoop.fs.Path
        self.path = self._path_class(path)
        self.fs = self.path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self.staging = self._path_class(
            self.path.getParent(), f".{self.path.getName()}.staging-{uuid.uuid4().hex[:12]}"
        )

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def refuse_existing(self, overwrite: bool) -> None:
        if self.exists() and not overwrite:
            raise OutputExists(f"{self.path} exists; pass --overwrite to replace it")

    @property
    def staging_uri(self) -> str:
        return str(self.staging.toString())

    @property
    def qualified_staging_uri(self) -> str:
        """The staging folder with its scheme (file:/... for a local path), for pyarrow."""
        return str(self.fs.makeQualified(self.staging).toString())

    @property
    def quarantine_uri(self) -> str:
        return str(self._path_class(self.staging, QUARANTINE).toString())

    def commit(self, overwrite: bool) -> None:
        """The staged result into place (a rename; on an object store, a copy)."""
        if overwrite and self.exists():
            self.fs.delete(self.path, True)
        if not self.fs.rename(self.staging, self.path):
            raise OSError(f"cannot move the result into {self.path}")

    def discard(self) -> None:
        self.fs.delete(self.staging, True)
