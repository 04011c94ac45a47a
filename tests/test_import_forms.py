"""import_model.py on each form a team logs a LightGBM model in (issue 23): the lightgbm and
sklearn flavours, autolog runs, booster / skops / pickle / joblib files named by --artifact, a
Pipeline (each served step: tests/test_import_pipelines.py), and the refusals (pickles without
--allow-pickle, other models). Every form is logged into a real MLflow server as a team would,
imported through the CLI's main(), and the stored booster (and compiled forest) scored against
the logged object's own predict_proba."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import joblib
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import skops.io
from mlflow.models import infer_signature
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import import_model
from scoring.importing import errors
from scoring.stored_model import compiled
from scoring.stored_model.layout import BOOSTER_FILE, COMPILED_FILE
from tests.service_helpers import (
    bento_models,
    code_matrix,
    served_probabilities,
    serving_one_worker,
)

pytestmark = pytest.mark.server

NUMERIC = ["AMT_CREDIT", "EXT_SOURCE_2", "DAYS_EMPLOYED"]
CATEGORICAL = "NAME_INCOME_TYPE"
INCOME_TYPES = ["Working", "Pensioner", "State servant", "Commercial associate"]
LGBM_SKOPS_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
]
# Tiny forests: each form costs an import, and --compile a compilation.
SMALL = {"n_estimators": 6, "num_leaves": 6, "min_child_samples": 5, "verbose": -1}


def applications(n_rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "AMT_CREDIT": rng.lognormal(12, 0.5, n_rows).round(2),
            "EXT_SOURCE_2": rng.beta(6, 4, n_rows),
            "DAYS_EMPLOYED": -rng.integers(0, 10_000, n_rows).astype(float),
            CATEGORICAL: pd.Categorical(rng.choice(INCOME_TYPES, n_rows), categories=INCOME_TYPES),
        }
    )
    risk = -4 * (frame.EXT_SOURCE_2 - 0.6) + (frame[CATEGORICAL] == "Working") * 0.8
    target = pd.Series((rng.random(n_rows) < 1 / (1 + np.exp(-risk))).astype(int))
    return frame, target


def focal_objective(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A team's own objective (plain logloss): a function a skops file can only name."""
    p = 1 / (1 + np.exp(-y_pred))
    return p - y_true, p * (1 - p)


@dataclass
class FormsStore:
    tracking_uri: str
    rows: pd.DataFrame
    """Rows to score, as the training code held them (the category column a pandas category)."""
    trap_marker: Path
    """Created by unpickling the `trap_file` run's trap.pkl: it must never exist."""
    runs: dict[str, str] = field(default_factory=dict)
    logged: dict[str, Any] = field(default_factory=dict)
    """The object each form's run logged, whose predict_proba the import must reproduce."""


class _Trap:
    """What an attacker pickles: unpickling it calls Path.touch, any callable would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return np.zeros(len(model_input))


def _log_files(files: dict[str, Any]) -> None:
    """Log model files at the run's root: a booster's text, a JSON dump, pickles, skops."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, write in files.items():
            path = Path(scratch) / name
            write(path)
            mlflow.log_artifact(str(path))


@pytest.fixture(scope="module")
def forms(mlflow_server, tmp_path_factory) -> FormsStore:
    url, _ = mlflow_server
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    mlflow.set_experiment("import_forms")
    x, y = applications(600, seed=5)
    marker = tmp_path_factory.mktemp("trap") / "unpickled"
    store = FormsStore(url, x.tail(200).reset_index(drop=True), marker)
    classifier = lgb.LGBMClassifier(**SMALL, random_state=0).fit(x, y)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 6, "min_data_in_leaf": 5},
        lgb.Dataset(x, y),
        num_boost_round=6,
    )
    signature = infer_signature(x.head(20), classifier.predict_proba(x.head(20))[:, 1])

    def run(form: str, logged: Any, log) -> None:
        with mlflow.start_run(run_name=form) as active:
            mlflow.log_param("decision_threshold", 0.4)
            log()
        store.runs[form], store.logged[form] = active.info.run_id, logged

    common = {"name": "model", "pip_requirements": []}  # no inference: ~7 s a model
    run(
        "lightgbm_booster",
        booster,
        lambda: mlflow.lightgbm.log_model(booster, signature=signature, **common),
    )
    run(
        "lightgbm_classifier_skops",
        classifier,
        lambda: mlflow.lightgbm.log_model(classifier, signature=signature, **common),
    )
    run(
        "lightgbm_classifier_cloudpickle",
        classifier,
        lambda: mlflow.lightgbm.log_model(
            classifier, signature=signature, serialization_format="cloudpickle", **common
        ),
    )
    run(
        "sklearn_skops",
        classifier,
        lambda: mlflow.sklearn.log_model(
            classifier, signature=signature, skops_trusted_types=LGBM_SKOPS_TYPES, **common
        ),
    )
    run(
        "sklearn_pickle",
        classifier,
        lambda: mlflow.sklearn.log_model(
            classifier, signature=signature, serialization_format="pickle", **common
        ),
    )
    run(
        "no_signature",
        classifier,
        lambda: mlflow.lightgbm.log_model(classifier, signature=False, **common),
    )

    # Autolog infers each model's pip requirements in a subprocess (~7 s a model); a 1 s
    # limit makes it fall back to the defaults. What is logged is otherwise autolog's own.
    inference_timeout = os.environ.get("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT")
    os.environ["MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT"] = "1"
    try:
        mlflow.lightgbm.autolog(silent=True, log_datasets=False)
        autologged = lgb.LGBMClassifier(**SMALL, random_state=1)
        run("lightgbm_autolog", autologged, lambda: autologged.fit(x, y))
        mlflow.lightgbm.autolog(disable=True)
        mlflow.sklearn.autolog(
            silent=True, log_datasets=False, max_tuning_runs=0, log_post_training_metrics=False
        )
        search = GridSearchCV(lgb.LGBMClassifier(**SMALL), {"num_leaves": [4, 6]}, cv=2)
        run("sklearn_autolog_search", search, lambda: search.fit(x, y))
    finally:
        mlflow.lightgbm.autolog(disable=True)
        mlflow.sklearn.autolog(disable=True)
        if inference_timeout is None:
            os.environ.pop("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT")
        else:
            os.environ["MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT"] = inference_timeout

    # Model files that are not MLflow models, as the context documents' teams logged them.
    run(
        "booster_file",
        classifier,
        lambda: _log_files({"model.txt": classifier.booster_.save_model}),
    )
    run(
        "pickle_file",
        classifier,
        lambda: _log_files({"production_model.pkl": lambda p: joblib.dump(classifier, p)}),
    )
    run(
        "joblib_file",
        classifier,
        lambda: _log_files({"model.joblib": lambda p: joblib.dump(classifier, p, compress=3)}),
    )
    run(
        "skops_file",
        classifier,
        lambda: _log_files({"model.skops": lambda p: skops.io.dump(classifier, p)}),
    )
    run(
        "json_dump_file",
        classifier,
        lambda: mlflow.log_dict(classifier.booster_.dump_model(), "model.json"),
    )
    pipeline = make_pipeline(StandardScaler(), lgb.LGBMClassifier(**SMALL)).fit(x[NUMERIC], y)
    run(
        "pipeline_file",
        pipeline,
        lambda: _log_files({"pipeline.pkl": lambda p: joblib.dump(pipeline, p)}),
    )

    run(
        "trap_file",
        None,
        lambda: _log_files({"trap.pkl": lambda p: joblib.dump(_Trap(marker), p)}),
    )

    def model_and_backup() -> None:
        mlflow.lightgbm.log_model(classifier, signature=signature, **common)
        _log_files({"production_model.pkl": lambda p: joblib.dump(classifier, p)})

    run("model_and_pickle_backup", classifier, model_and_backup)

    # What is still refused.
    numeric_signature = infer_signature(x[NUMERIC].head(20))
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(x[NUMERIC], y)
    run(
        "random_forest",
        forest,
        lambda: mlflow.sklearn.log_model(
            forest,
            signature=numeric_signature,
            skops_trusted_types=[
                "sklearn.tree._tree.Tree",
                "sklearn.ensemble._forest.RandomForestClassifier",
                "sklearn.tree._classes.DecisionTreeClassifier",
            ],
            **common,
        ),
    )
    run(
        "sklearn_pipeline",
        pipeline,
        lambda: mlflow.sklearn.log_model(
            pipeline, signature=numeric_signature, skops_trusted_types=LGBM_SKOPS_TYPES, **common
        ),
    )
    regressor = lgb.LGBMRegressor(**SMALL).fit(x, x.EXT_SOURCE_2)
    run(
        "regressor",
        regressor,
        lambda: mlflow.lightgbm.log_model(regressor, signature=signature, **common),
    )
    regression = lgb.train(
        {"objective": "regression", "verbose": -1}, lgb.Dataset(x, x.EXT_SOURCE_2), 3
    )
    run(
        "regression_booster",
        regression,
        lambda: mlflow.lightgbm.log_model(regression, signature=signature, **common),
    )
    ranker = lgb.LGBMRanker(**SMALL).fit(x, y, group=[300, 300])
    run(
        "ranker",
        ranker,
        lambda: mlflow.lightgbm.log_model(
            ranker,
            signature=signature,
            skops_trusted_types=["lightgbm.sklearn.LGBMRanker"],
            **common,
        ),
    )
    multiclass = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(x, (x.EXT_SOURCE_2 * 3).astype(int).clip(0, 2)),
        3,
    )
    run(
        "multiclass_booster",
        multiclass,
        lambda: mlflow.lightgbm.log_model(multiclass, signature=signature, **common),
    )
    run(
        "custom_pyfunc",
        None,
        lambda: mlflow.pyfunc.log_model(
            python_model=_Constant(), signature=numeric_signature, **common
        ),
    )
    own_objective = lgb.LGBMClassifier(**SMALL, objective=focal_objective).fit(x, y)
    objective_name = f"{focal_objective.__module__}.{focal_objective.__qualname__}"
    run(
        "untrusted_skops_type",
        own_objective,
        lambda: mlflow.lightgbm.log_model(
            own_objective,
            signature=signature,
            skops_trusted_types=[*LGBM_SKOPS_TYPES, objective_name],
            **common,
        ),
    )
    return store


def run_import(store: FormsStore, form: str, bento_name: str, *flags: str) -> int:
    args = ["--tracking-uri", store.tracking_uri, "--run-id", store.runs[form]]
    return import_model.main([*args, "--bento-name", bento_name, *flags])


def imported(store: FormsStore, form: str, capsys, *flags: str) -> tuple[bentoml.Model, str]:
    """Import `form` into a Bento model of its own; (the model, the CLI's stdout+stderr)."""
    bento_name = f"form_{form}" + ("_compiled" if "--compile" in flags else "")
    code = run_import(store, form, bento_name, *flags)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (tag,) = bento_models(bento_name)
    return bentoml.models.get(tag), captured.out + captured.err


def expected_probabilities(store: FormsStore, form: str) -> np.ndarray:
    logged = store.logged[form]
    if isinstance(logged, lgb.Booster):
        return logged.predict(store.rows)
    return logged.predict_proba(store.rows)[:, 1]


def assert_scores_like_the_logged_object(store: FormsStore, form: str, model) -> None:
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    np.testing.assert_allclose(
        booster.predict(store.rows), expected_probabilities(store, form), rtol=0, atol=1e-9
    )


def assert_refused(capsys, store: FormsStore, form: str, code: int, text: str, *flags: str):
    bento_name = f"refused_{form}"
    assert run_import(store, form, bento_name, *flags) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert text in err
    assert "Traceback" not in err
    assert bento_models(bento_name) == []


@pytest.mark.parametrize(
    ("form", "flags", "source", "serialization"),
    [
        ("lightgbm_booster", (), "mlflow-lightgbm", "lightgbm-text"),
        ("lightgbm_classifier_skops", (), "mlflow-lightgbm", "skops"),
        ("lightgbm_classifier_cloudpickle", ("--allow-pickle",), "mlflow-lightgbm", "cloudpickle"),
        ("sklearn_skops", (), "mlflow-sklearn", "skops"),
        ("sklearn_pickle", ("--allow-pickle",), "mlflow-sklearn", "pickle"),
        ("lightgbm_autolog", (), "mlflow-lightgbm", "skops"),
        ("sklearn_autolog_search", ("--allow-pickle",), "mlflow-sklearn", "cloudpickle"),
    ],
)
def test_each_mlflow_form_imports_and_scores_as_the_logged_object(
    forms, capsys, form, flags, source, serialization
):
    model, _ = imported(forms, form, capsys, *flags)
    assert_scores_like_the_logged_object(forms, form, model)
    labels = model.info.labels
    assert (labels["model_source"], labels["serialization"]) == (source, serialization)
    assert labels["contract_source"] == "mlflow signature"
    assert model.info.metadata["serialization"] == serialization


@pytest.mark.parametrize(
    ("form", "path", "flags", "serialization"),
    [
        ("booster_file", "model.txt", (), "lightgbm-text"),
        ("skops_file", "model.skops", (), "skops"),
        ("pickle_file", "production_model.pkl", ("--allow-pickle",), "pickle"),
        ("joblib_file", "model.joblib", ("--allow-pickle",), "joblib"),
    ],
)
def test_an_artifact_file_imports_with_the_boosters_contract(
    forms, capsys, form, path, flags, serialization
):
    model, output = imported(forms, form, capsys, "--artifact", path, *flags)
    assert_scores_like_the_logged_object(forms, form, model)
    labels = model.info.labels
    assert (labels["model_source"], labels["serialization"]) == (f"artifact:{path}", serialization)
    assert labels["contract_source"].startswith("booster")
    assert "contract from the booster" in output
    features = {f["name"]: f for f in model.info.metadata["features"]}
    assert list(features) == [*NUMERIC, CATEGORICAL]
    assert features[CATEGORICAL] == {
        "name": CATEGORICAL,
        "type": "string",
        "categorical": True,
        "categories": INCOME_TYPES,
    }


@pytest.mark.skipif(not compiled.runs_here(), reason=f"forests compile for {compiled.ARCHITECTURE}")
@pytest.mark.parametrize(
    ("form", "flags"),
    [("sklearn_skops", ()), ("booster_file", ("--artifact", "model.txt"))],
)
def test_the_compiled_forest_scores_as_the_logged_object(forms, capsys, form, flags):
    model, _ = imported(forms, form, capsys, "--compile", *flags)
    booster = lgb.Booster(model_file=model.path_of(BOOSTER_FILE))
    forest = compiled.load_forest(
        Path(model.path_of(BOOSTER_FILE)), Path(model.path_of(COMPILED_FILE)), booster
    )
    records = forms.rows.astype({CATEGORICAL: object}).to_dict("records")
    np.testing.assert_allclose(
        forest.predict(code_matrix(str(model.tag), records)),
        expected_probabilities(forms, form),
        rtol=0,
        atol=1e-9,
    )


def test_schema_from_model_imports_a_model_without_signature(forms, capsys):
    model, output = imported(forms, "no_signature", capsys, "--schema-from-model")
    assert_scores_like_the_logged_object(forms, "no_signature", model)
    assert model.info.labels["contract_source"] == "booster (--schema-from-model)"
    assert model.info.metadata["contract_source"] == "booster (--schema-from-model)"
    assert "contract from the booster (--schema-from-model)" in output


def test_a_model_without_signature_is_still_refused_by_default(forms, capsys):
    code = errors.UnservableModel.exit_code
    assert_refused(capsys, forms, "no_signature", code, "no signature")


def test_a_run_with_a_model_and_a_pickle_backup_imports_the_mlflow_model_and_says_so(forms, capsys):
    model, output = imported(forms, "model_and_pickle_backup", capsys)
    assert model.info.labels["model_source"] == "mlflow-lightgbm"
    assert "also logged production_model.pkl; the MLflow model models:/m-" in output
    assert "--artifact" in output


@pytest.mark.parametrize(
    ("form", "listed"),
    [("booster_file", "model.txt"), ("pickle_file", "production_model.pkl")],
)
def test_a_run_with_only_model_files_is_refused_listing_them_and_the_flag(
    forms, capsys, form, listed
):
    code = errors.BrokenRun.exit_code
    assert_refused(capsys, forms, form, code, f"logged model files: {listed}; import one with")


@pytest.mark.parametrize(
    ("form", "flags", "named"),
    [
        ("lightgbm_classifier_cloudpickle", (), "model.pkl is a cloudpickle file"),
        ("sklearn_pickle", (), "model.pkl is a pickle file"),
        ("sklearn_autolog_search", (), "model.pkl is a cloudpickle file"),
        ("pickle_file", ("--artifact", "production_model.pkl"), "production_model.pkl is a pickle"),
        ("joblib_file", ("--artifact", "model.joblib"), "model.joblib is a joblib file"),
    ],
)
def test_a_pickle_is_not_loaded_without_allow_pickle(forms, capsys, form, flags, named):
    code = errors.UnsafeModelFile.exit_code
    assert_refused(capsys, forms, form, code, named, *flags)


def test_a_refused_pickle_runs_none_of_its_code(forms, capsys):
    code = errors.UnsafeModelFile.exit_code
    assert_refused(capsys, forms, "trap_file", code, "trap.pkl is a", "--artifact", "trap.pkl")
    assert not forms.trap_marker.exists()


def test_the_pickle_refusal_says_why_and_names_the_flag(forms, capsys):
    assert_refused(
        capsys,
        forms,
        "sklearn_pickle",
        errors.UnsafeModelFile.exit_code,
        "unpickling runs any code its writer put in it",
    )
    assert_refused(
        capsys, forms, "sklearn_pickle", errors.UnsafeModelFile.exit_code, "--allow-pickle"
    )


def test_a_skops_file_holding_an_untrusted_type_is_refused_naming_it(forms, capsys):
    assert_refused(
        capsys,
        forms,
        "untrusted_skops_type",
        errors.UnsafeModelFile.exit_code,
        "focal_objective",
    )


@pytest.mark.parametrize(
    ("form", "flags", "text"),
    [
        ("random_forest", (), "model is a RandomForestClassifier"),
        ("random_forest", ("--allow-pickle",), "not LightGBM"),
        ("regressor", (), "LightGBM regressor (LGBMRegressor)"),
        ("regression_booster", (), "objective is 'regression'"),
        ("ranker", (), "LightGBM ranker (LGBMRanker)"),
        ("multiclass_booster", (), "objective is 'multiclass"),
        ("custom_pyfunc", (), "custom pyfunc PythonModel"),
        ("json_dump_file", ("--artifact", "model.json"), "dump_model() JSON"),
    ],
)
def test_what_is_not_a_binary_lightgbm_classifier_is_refused_naming_it(
    forms, capsys, form, flags, text
):
    assert_refused(capsys, forms, form, errors.UnservableModel.exit_code, text, *flags)


def test_a_logged_pipeline_imports_and_scores_as_its_predict_proba(forms, capsys):
    model, output = imported(forms, "sklearn_pipeline", capsys)
    assert "a Pipeline (StandardScaler -> LGBMClassifier)" in output
    assert model.info.labels["pipeline"] == "StandardScaler -> LGBMClassifier"
    assert [f["name"] for f in model.info.metadata["features"]] == NUMERIC
    records = forms.rows[NUMERIC].to_dict("records")
    np.testing.assert_allclose(
        served_probabilities(str(model.tag), records),
        forms.logged["sklearn_pipeline"].predict_proba(forms.rows[NUMERIC])[:, 1],
        rtol=0,
        atol=1e-9,
    )


def test_a_pipeline_file_imports_with_the_columns_it_was_fitted_on(forms, capsys):
    flags = ("--artifact", "pipeline.pkl", "--allow-pickle")
    model, output = imported(forms, "pipeline_file", capsys, *flags)
    assert "contract from the pipeline's fitted columns (--artifact file" in output
    features = model.info.metadata["features"]
    assert features == [{"name": name, "type": "double"} for name in NUMERIC]
    np.testing.assert_allclose(
        served_probabilities(str(model.tag), forms.rows[NUMERIC].to_dict("records")),
        forms.logged["pipeline_file"].predict_proba(forms.rows[NUMERIC])[:, 1],
        rtol=0,
        atol=1e-9,
    )


def test_an_artifact_the_run_does_not_have_is_refused(forms, capsys):
    code = errors.BrokenRun.exit_code
    assert_refused(
        capsys,
        forms,
        "booster_file",
        code,
        "cannot download --artifact nope.txt",
        "--artifact",
        "nope.txt",
    )


@pytest.fixture(scope="module")
def sklearn_form_server(forms, bentoml_home, tmp_path_factory):
    """A real `bentoml serve` of the sklearn-flavour LGBMClassifier, imported with --compile
    as env/run.sh imports."""
    assert run_import(forms, "sklearn_skops", "served_sklearn_form", "--compile") == 0
    (tag,) = bento_models("served_sklearn_form")
    log = tmp_path_factory.mktemp("serve-sklearn-form") / "serve.log"
    with serving_one_worker(tag, bentoml_home, log) as url:
        yield url


def test_a_served_sklearn_flavour_model_answers_as_its_predict_proba(forms, sklearn_form_server):
    records = forms.rows.head(50).astype({CATEGORICAL: object}).to_dict("records")
    response = requests.post(
        f"{sklearn_form_server}/predict", json={"applications": records}, timeout=30
    )
    assert response.status_code == 200, response.text
    served = [row["probability_of_default"] for row in response.json()]
    expected = expected_probabilities(forms, "sklearn_skops")[:50]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
