"""Why an import is refused. Each reason has its own exit code so scripts can branch on it."""

from __future__ import annotations


class ImportRefused(Exception):  # noqa: N818 - a refusal, not an error of ours
    """A refusal with a one-line message saying what is wrong and what to do."""

    exit_code = 1


class TrackingUnreachable(ImportRefused):
    exit_code = 3


class NoProductionModel(ImportRefused):
    exit_code = 4


class AmbiguousProduction(ImportRefused):
    exit_code = 5


class BrokenRun(ImportRefused):
    """The run is deleted, or its model artifact is missing or cannot be downloaded."""

    exit_code = 6


class UnservableModel(ImportRefused):
    """Not a LightGBM binary classifier, or no signature."""

    exit_code = 7


class ThresholdProblem(ImportRefused):
    exit_code = 8
