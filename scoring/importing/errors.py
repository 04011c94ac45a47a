"""Why an import is refused. Each refusal has its own exit code so scripts can branch on it, and
the CLI's exit-code help is generated from these classes, so the two cannot drift."""

from __future__ import annotations


class ImportRefused(Exception):  # noqa: N818 - a refusal, not an error of ours
    """A refusal with a one-line message saying what is wrong and what to do. Raise one of the
    subclasses: each declares its exit code and what it means."""

    exit_code = 1
    meaning = "refused"
    considered: tuple[str, ...] = ()  # the candidates looked at, for --dry-run

    def __init_subclass__(cls, exit_code: int, meaning: str, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.exit_code, cls.meaning = exit_code, meaning


class TrackingUnreachable(
    ImportRefused, exit_code=3, meaning="tracking server or store unreachable"
):
    pass


class NoProductionModel(ImportRefused, exit_code=4, meaning="no production model"):
    pass


class AmbiguousProduction(
    ImportRefused,
    exit_code=5,
    meaning="ambiguous production claim (several runs, or several models in one run)",
):
    pass


class BrokenRun(
    ImportRefused,
    exit_code=6,
    meaning="broken run (deleted, or its model artifact missing or partial)",
):
    pass


class UnservableModel(
    ImportRefused,
    exit_code=7,
    meaning="not a servable LightGBM binary classifier, or no signature",
):
    pass


class ThresholdProblem(
    ImportRefused,
    exit_code=8,
    meaning="decision threshold missing, out of range or conflicting",
):
    pass


class ReasonTableProblem(
    ImportRefused,
    exit_code=9,
    meaning="reason-code table unreadable or not fitting the model",
):
    pass


class ReferenceProblem(
    ImportRefused,
    exit_code=10,
    meaning="drift reference sample unreadable, or missing the model's features",
):
    pass


class UnsafeModelFile(
    ImportRefused,
    exit_code=11,
    meaning="loading the model would run code: a pickle without --allow-pickle, or a skops "
    "file holding types outside the trusted list",
):
    pass


class ChallengerMisfit(
    ImportRefused,
    exit_code=12,
    meaning="a challenger that cannot read the champion's requests, or no champion to compare",
):
    pass


REFUSALS: tuple[type[ImportRefused], ...] = (
    TrackingUnreachable,
    NoProductionModel,
    AmbiguousProduction,
    BrokenRun,
    UnservableModel,
    ThresholdProblem,
    ReasonTableProblem,
    ReferenceProblem,
    UnsafeModelFile,
    ChallengerMisfit,
)


def exit_code_help() -> str:
    codes = [(0, "imported (or already present)"), (2, "usage error")]
    codes += [(refusal.exit_code, refusal.meaning) for refusal in REFUSALS]
    return "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in sorted(codes))
