"""The training reference for drift monitoring, as the importer stores it and the service reads
it: the bins of every feature and of the score, the reference's share in each bin, and the
reference's score distribution (to know its reject rate at whatever threshold is served).

One binning function serves both sides (`bin_indices`), so live rows fall into bins exactly as
the reference rows did. PSI is computed in one place too (`psi`), with the epsilon the
Prometheus recording rules use (env/k8s/prometheus-rule.yaml)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

# The stored file, beside model.txt; its SHA-256 is kept with the others (layout.CHECKSUMS_KEY).
DRIFT_REFERENCE_FILE = "drift_reference.json"
FORMAT_VERSION = 1
MISSING_BIN = "missing"
# Deciles: the conventional PSI binning for scores and numeric features (10 bins).
QUANTILES = tuple(i / 10 for i in range(1, 10))
# A share of 0 makes PSI infinite; each share is raised to at least this before the sum, as
# Evidently's psi stattest does for empty bins (it replaces 0 with 0.0001). The recording rules
# use clamp_min(share, 0.0001): the same figure whenever no share lies strictly in (0, 1e-4).
PSI_EPSILON = 1e-4
# The reference's score distribution kept at this many quantiles (0, 0.1%, ..., 100%): the
# reference reject rate at a threshold overridden at serving time (SCORING_THRESHOLD) is read
# from it, within 0.1 points.
SCORE_QUANTILE_POINTS = 1001

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Bins:
    """One feature's (or the score's) bins and the reference's share in each, in bin order.

    numeric: `edges` are the inner edges; bin i holds edges[i-1] <= x < edges[i], then a last
    `missing` bin (for features only). categorical: bin i is code i (the i-th training
    category, `labels[i]`), then `missing`; a code out of range also counts as missing, as
    LightGBM scores it."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()
    has_missing: bool = True

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin (vectorised: one searchsorted for a whole column)."""
        return bin_indices(self, values)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many values fall in each bin: `np.bincount(self.indices(values))`, computed
        as such for categories; for numbers from one count per edge, 3x faster (the service's
        drift thread bins every scored row: 189 columns of a second's traffic)."""
        if self.kind != "numeric":
            return np.bincount(self.indices(values), minlength=len(self.labels))
        values = np.asarray(values, dtype=np.float64)
        # x < edge is false for NaN, so these count the present values below each edge.
        below = [np.count_nonzero(values < edge) for edge in self.edges]
        if not self.has_missing:  # searchsorted puts a NaN last: so does this
            return np.diff([0, *below, len(values)])
        missing = np.count_nonzero(np.isnan(values))
        return np.diff([0, *below, len(values) - missing, len(values)])


def bin_indices(bins: Bins, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    last = len(bins.labels) - 1
    if bins.kind == "numeric":
        index = np.searchsorted(np.asarray(bins.edges), values, side="right")
    else:
        n_categories = last if bins.has_missing else last + 1
        valid = (values >= 0) & (values < n_categories) & (values == np.floor(values))
        index = np.where(valid, np.nan_to_num(values, nan=0.0), last).astype(np.intp)
    if bins.has_missing:
        index = np.where(np.isnan(values), last, index)
    return index


def numeric_bins(name: str, values: np.ndarray, has_missing: bool = True) -> Bins:
    """Deciles of the non-missing values, plus a missing bin. Edges are values of the sample
    (bin 0 holds the lowest tenth: x < the 11th percentile's value), equal edges are merged and
    none sits at the minimum, so a feature with few distinct values gets one bin per value
    and no bin is empty in the reference."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    edges: tuple[float, ...] = ()
    if len(present):
        deciles = np.unique(np.quantile(present, QUANTILES, method="higher"))
        edges = tuple(float(e) for e in deciles[deciles > present.min()])
    labels = tuple(str(i) for i in range(len(edges) + 1)) + ((MISSING_BIN,) if has_missing else ())
    draft = Bins(name, "numeric", labels, (), edges, has_missing)
    return Bins(name, "numeric", labels, _shares(draft.counts(values)), edges, has_missing)


def categorical_bins(name: str, codes: np.ndarray, categories: Sequence[Any]) -> Bins:
    labels = (*(str(c) for c in categories), MISSING_BIN)
    draft = Bins(name, "categorical", labels, ())
    return Bins(name, "categorical", labels, _shares(draft.counts(codes)))


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c) for c in (counts / total if total else counts.astype(float)))


def psi(reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray) -> float:
    """Population stability index: sum over bins of (live - ref) * ln(live / ref), each share
    raised to at least PSI_EPSILON. Takes shares or counts (each side is normalised)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    ref = np.maximum(ref / ref.sum(), PSI_EPSILON)
    cur = np.maximum(cur / cur.sum(), PSI_EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass(frozen=True)
class DriftReference:
    source: str
    """Where the sample came from: the run artifact's URI or the --reference file's name."""
    sample_sha256: str
    rows: int
    threshold: float
    """The threshold at import; `reject_rate` is the reference's share at or above it."""
    reject_rate: float
    features: tuple[Bins, ...]
    score: Bins
    score_quantiles: tuple[float, ...]

    def reject_rate_at(self, threshold: float) -> float:
        """The reference's share scored at or above `threshold` (the served one may be an
        override), from its stored score quantiles."""
        if threshold == self.threshold:
            return self.reject_rate
        levels = np.linspace(0.0, 1.0, len(self.score_quantiles))
        return float(1.0 - np.interp(threshold, self.score_quantiles, levels))

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> DriftReference:
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"drift reference format {data.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        return cls(
            source=data["source"],
            sample_sha256=data["sample_sha256"],
            rows=data["rows"],
            threshold=data["threshold"],
            reject_rate=data["reject_rate"],
            features=tuple(_bins_from(entry) for entry in data["features"]),
            score=_bins_from(data["score"]),
            score_quantiles=tuple(data["score_quantiles"]),
        )


def _bins_from(entry: Mapping[str, Any]) -> Bins:
    return Bins(
        name=entry["name"],
        kind=entry["kind"],
        labels=tuple(entry["labels"]),
        shares=tuple(entry["shares"]),
        edges=tuple(entry["edges"]),
        has_missing=entry["has_missing"],
    )


def build_reference(
    matrix: np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    categories: Mapping[str, Sequence[Any]],
    threshold: float,
    source: str,
    sample_sha256: str,
) -> DriftReference:
    """The reference from the sample as the service would see it: `matrix` in model column
    order with categories as codes, and the model's probabilities for it."""
    features = tuple(
        categorical_bins(name, matrix[:, i], categories[name])
        if name in categories
        else numeric_bins(name, matrix[:, i])
        for i, name in enumerate(names)
    )
    return DriftReference(
        source=source,
        sample_sha256=sample_sha256,
        rows=len(matrix),
        threshold=threshold,
        reject_rate=float(np.mean(probabilities >= threshold)),
        features=features,
        score=numeric_bins("score", probabilities, has_missing=False),
        score_quantiles=tuple(
            float(q) for q in np.quantile(probabilities, np.linspace(0, 1, SCORE_QUANTILE_POINTS))
        ),
    )
