"""Unit tests for the small pure pieces the import and the service share."""

from __future__ import annotations

import pytest

from scoring.importing.errors import ThresholdProblem
from scoring.importing.redact import redact_uri
from scoring.importing.threshold import Threshold, choose_threshold, threshold_sources
from scoring.stored_model.provenance import Provenance


def test_threshold_sources_follow_precedence_version_tag_then_param_then_metric():
    sources = threshold_sources(
        {"decision_threshold": "0.4"}, {"optimal_threshold": "0.4"}, {"threshold": 0.4}
    )
    assert [s.source for s in sources] == [
        "model-version tag decision_threshold",
        "run param optimal_threshold",
        "run metric threshold",
    ]
    assert choose_threshold(None, sources) == Threshold(0.4, "model-version tag decision_threshold")


def test_disagreeing_threshold_sources_are_refused_naming_both():
    sources = threshold_sources({}, {"optimal_threshold": "0.48"}, {"optimal_threshold": 0.338})
    conflict = r"optimal_threshold=0\.48.*optimal_threshold=0\.338"
    with pytest.raises(ThresholdProblem, match=conflict):
        choose_threshold(None, sources)


def test_threshold_flag_settles_disagreement():
    sources = threshold_sources({}, {"optimal_threshold": "0.48"}, {"optimal_threshold": 0.338})
    assert choose_threshold(0.45, sources) == Threshold(0.45, "--threshold flag")


@pytest.mark.parametrize("raw", ["0", "1", "-0.2", "nan", "inf", "abc"])
def test_threshold_outside_open_unit_interval_or_not_a_number_is_refused(raw):
    with pytest.raises(ThresholdProblem):
        threshold_sources({}, {"decision_threshold": raw}, {})


def test_provenance_round_trips_through_labels():
    provenance = Provenance("abc", 0.338, "run metric optimal_threshold", "exp", "production")
    labels = provenance.to_labels()
    assert all(isinstance(value, str) for value in labels.values())
    assert Provenance.from_labels(labels) == provenance


@pytest.mark.parametrize("missing", ["run_id", "threshold", "threshold_source", "experiment"])
def test_provenance_from_incomplete_labels_names_the_missing_label(missing):
    labels = Provenance("abc", 0.4, "flag", "exp").to_labels()
    del labels[missing]
    with pytest.raises(ValueError, match=missing):
        Provenance.from_labels(labels)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://alice:s3cret@mlflow.example:5000/path", "https://***@mlflow.example:5000/path"),
        ("https://token@mlflow.example", "https://***@mlflow.example"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_uri_hides_credentials_only(uri, expected):
    assert redact_uri(uri) == expected
