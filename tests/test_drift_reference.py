"""The drift reference's bins and PSI (scoring/stored_model/drift_reference.py): pure units, and
our PSI against Evidently's on the same bins (figures kept in tests/fixtures/psi_evidently.json,
made by tests/psi_cases.py in a throwaway environment: Evidently is not a dependency)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from scoring.stored_model.drift_reference import (
    MISSING_BIN,
    DriftReference,
    bin_indices,
    build_reference,
    categorical_bins,
    numeric_bins,
    psi,
)
from tests.psi_cases import cases, labels

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "psi_evidently.json").read_text())


@pytest.mark.parametrize("name", sorted(FIXTURE["cases"]))
def test_our_psi_equals_evidentlys_on_the_same_bins(name):
    bins, reference, current = cases()[name]
    expected = FIXTURE["cases"][name]
    ref_labels, cur_labels = labels(bins, reference), labels(bins, current)
    # The same samples as when the fixture was made (else numpy's generator changed).
    assert {k: ref_labels.count(k) for k in set(ref_labels)} == expected["reference_counts"]
    assert {k: cur_labels.count(k) for k in set(cur_labels)} == expected["current_counts"]
    ours = psi(bins.shares, bins.counts(current))
    assert ours == pytest.approx(expected["evidently_psi"], rel=1e-9, abs=1e-12)


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift():
    reference = [0.25, 0.25, 0.25, 0.25]
    assert psi(reference, [100, 100, 100, 100]) == 0.0
    assert 0 < psi(reference, [110, 90, 100, 100]) < psi(reference, [200, 50, 100, 50])


def test_an_empty_bin_costs_a_finite_amount_set_by_the_epsilon():
    value = psi([0.5, 0.5, 0.0], [50, 40, 10])
    expected = (0.5 - 0.5) * 0 + (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(1e3)
    assert value == pytest.approx(expected)


def test_numeric_bins_are_reference_deciles_with_a_missing_bin():
    values = np.concatenate([np.arange(1000, dtype=float), [np.nan] * 100])
    bins = numeric_bins("x", values)
    assert bins.labels == (*(str(i) for i in range(10)), MISSING_BIN)
    assert bins.shares[:10] == pytest.approx([1000 / 1100 / 10] * 10)
    assert bins.shares[10] == pytest.approx(100 / 1100)
    # A value on an edge goes to the upper bin, as the reference's own did; NaN to missing.
    edge = bins.edges[4]
    assert list(bins.indices(np.array([-1e9, edge, 1e9, np.nan]))) == [0, 5, 9, 10]


def test_a_feature_with_few_values_gets_one_bin_per_value_not_ten():
    bins = numeric_bins("flag", np.array([0.0] * 700 + [1.0] * 300))
    assert bins.labels == ("0", "1", MISSING_BIN)
    assert bins.shares == pytest.approx((0.7, 0.3, 0.0))


def test_categorical_codes_out_of_range_negative_or_fractional_count_as_missing():
    bins = categorical_bins("c", np.array([0.0, 1.0, 1.0, np.nan]), ["a", "b"])
    assert bins.labels == ("a", "b", MISSING_BIN)
    assert bins.shares == pytest.approx((0.25, 0.5, 0.25))
    assert list(bins.indices(np.array([1.0, 2.0, -1.0, 0.5, np.nan]))) == [1, 2, 2, 2, 2]


def test_the_reference_survives_its_json_and_reads_the_reject_rate_at_any_threshold():
    rng = np.random.default_rng(0)
    matrix = np.column_stack([rng.normal(size=2000), rng.integers(0, 3, 2000).astype(float)])
    probabilities = rng.beta(2, 5, 2000)
    reference = build_reference(
        matrix, probabilities, ["x", "c"], {"c": ["u", "v", "w"]}, 0.4, "test", "0" * 64
    )
    again = DriftReference.from_json(reference.to_json())
    assert again == reference
    assert again.reject_rate == pytest.approx(np.mean(probabilities >= 0.4))
    for threshold in (0.1, 0.25, 0.5, 0.7):
        assert again.reject_rate_at(threshold) == pytest.approx(
            np.mean(probabilities >= threshold), abs=0.002
        )
    assert again.score.shares == pytest.approx([0.1] * 10)


@pytest.mark.parametrize("has_missing", [True, False])
def test_counts_are_the_bincount_of_each_values_bin(has_missing):
    """counts() takes a faster road for numbers; it must land where bin_indices() puts each
    value: on an edge (a bin's lower bound), between, beyond both ends, and NaN."""
    rng = np.random.default_rng(3)
    bins = numeric_bins("x", rng.normal(size=2000), has_missing=has_missing)
    values = np.concatenate([bins.edges, rng.normal(scale=3, size=5000), [np.nan] * 7, [-9e9, 9e9]])
    expected = np.bincount(bin_indices(bins, values), minlength=len(bins.labels))
    assert bins.counts(values).tolist() == expected.tolist()
    assert bins.counts(values).sum() == len(values)
