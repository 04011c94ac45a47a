"""Which predictor each executor scored with, gathered by a Spark accumulator: the driver learns
whether any executor fell back to the booster without ever collecting a row."""

from __future__ import annotations

from pyspark.accumulators import AccumulatorParam


class NamesParam(AccumulatorParam[frozenset[str]]):
    """A set of names, merged by union (a retried task adds a name already there: no harm)."""

    def zero(self, value: frozenset[str]) -> frozenset[str]:
        return frozenset()

    def addInPlace(self, value1: frozenset[str], value2: frozenset[str]) -> frozenset[str]:  # noqa: N802 - Spark's name
        return value1 | value2
