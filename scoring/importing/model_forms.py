"""The forms a LightGBM model is logged in, and how its booster is taken out of each.

An MLflow model of the `lightgbm` flavour (a Booster as LightGBM text, an LGBMClassifier as
skops or a pickle), of the `sklearn` flavour (an LGBMClassifier, a Pipeline ending in one, or a
search such as GridSearchCV whose refitted best estimator is either), or a file named by
--artifact: each ends as one `lgb.Booster`, with a Pipeline's steps before it kept beside it
(scoring/importing/pipelines.py checks them). Anything else is refused naming what it is,
before it is loaded where the file says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
from mlflow.models import Model

from scoring.importing import safe_load, skops_steps
from scoring.importing.errors import BrokenRun, UnservableModel

BOOSTER_CLASS = "lightgbm.basic.Booster"
CLASSIFIER_CLASS = "lightgbm.sklearn.LGBMClassifier"
# scikit-learn's searches delegate predict_proba to the refitted best estimator.
SEARCH_CLASSES = (
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.model_selection._search.RandomizedSearchCV",
)
PIPELINE_CLASS = "sklearn.pipeline.Pipeline"
_WHAT_LIGHTGBM_IS = {
    "lightgbm.sklearn.LGBMRegressor": "a LightGBM regressor (LGBMRegressor)",
    "lightgbm.sklearn.LGBMRanker": "a LightGBM ranker (LGBMRanker)",
}


@dataclass(frozen=True)
class ModelFile:
    """The one file that holds a model, and how it was written."""

    path: Path
    serialization: str
    """lightgbm-text, skops, pickle, cloudpickle or joblib."""
    source: str
    """Where it came from: mlflow-lightgbm, mlflow-sklearn, or artifact:PATH."""


def _short(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]


def pipeline_refusal(steps: list[str]) -> UnservableModel:
    """A Pipeline whose last step is not a LightGBM classifier."""
    last = f" ending in {steps[-1]}" if steps else ""
    what = _WHAT_LIGHTGBM_IS.get(f"lightgbm.sklearn.{steps[-1]}") if steps else None
    chain = f"model is a scikit-learn Pipeline{last} ({' -> '.join(steps)})"
    if what:  # LightGBM, but not a binary classifier
        return UnservableModel(f"{chain}, not a binary classifier: its last step is {what}")
    return UnservableModel(f"{chain}, not LightGBM")


def refuse_unless_lightgbm(qualified_class: str, pipeline_steps: list[str] | None = None) -> None:
    """Refuse, by the class a file says it holds, anything that is not a LightGBM classifier,
    a booster, a Pipeline ending in a classifier or a search over either."""
    if qualified_class in (BOOSTER_CLASS, CLASSIFIER_CLASS, *SEARCH_CLASSES):
        return
    if qualified_class == PIPELINE_CLASS:
        steps = pipeline_steps or []
        if steps and steps[-1] == "LGBMClassifier":
            return
        raise pipeline_refusal(steps)
    what = _WHAT_LIGHTGBM_IS.get(qualified_class)
    if what:
        raise UnservableModel(f"model is {what}, not a binary classifier")
    raise UnservableModel(f"model is a {_short(qualified_class)} ({qualified_class}), not LightGBM")


def _class_of(native: object) -> str:
    kind = type(native)
    return f"{kind.__module__}.{kind.__qualname__}"


@dataclass(frozen=True)
class ReadModel:
    booster: lgb.Booster
    pipeline: Any = None
    """The scikit-learn Pipeline the booster ends, when the model is one; its steps are
    checked by scoring/importing/pipelines.py."""


def booster_of(native: Any) -> lgb.Booster:
    """The booster inside a loaded classifier; refuses what is not a binary LightGBM one."""
    if isinstance(native, lgb.Booster):
        return native
    if type(native) is lgb.LGBMClassifier:
        if not native.__sklearn_is_fitted__():
            raise UnservableModel("the LGBMClassifier is not fitted")
        if native.n_classes_ != 2:
            raise UnservableModel(f"classifier has {native.n_classes_} classes, not 2 (binary)")
        return native.booster_
    if _class_of(native) in SEARCH_CLASSES:
        raise UnservableModel(f"model is a {type(native).__name__} inside a search, not LightGBM")
    refuse_unless_lightgbm(_class_of(native))
    raise UnservableModel(f"model is a {type(native).__name__}, not LightGBM")


def model_of(native: Any) -> ReadModel:
    """The booster inside a loaded model, and the Pipeline around it if there is one."""
    if _class_of(native) in SEARCH_CLASSES:
        best = getattr(native, "best_estimator_", None)
        if best is None:
            raise UnservableModel(f"{type(native).__name__} was not refitted (refit=False)")
        native = best
    if _class_of(native) == PIPELINE_CLASS:
        steps = [step for _, step in native.steps]
        final = steps[-1] if steps else None
        if type(final) is not lgb.LGBMClassifier:
            raise pipeline_refusal([type(step).__name__ for step in steps])
        return ReadModel(booster_of(final), native if len(steps) > 1 else None)
    return ReadModel(booster_of(native))


def _undeclared_flavor(spec: Model) -> UnservableModel:
    flavors = ", ".join(sorted(spec.flavors)) or "none"
    declared = [conf.get("model_class") for conf in spec.flavors.values()]
    named = next((name for name in declared if isinstance(name, str)), None)
    if named:
        return UnservableModel(f"model is a {_short(named)} (flavors: {flavors}), not LightGBM")
    if "python_model" in spec.flavors.get("python_function", {}):
        return UnservableModel(
            f"model is a custom pyfunc PythonModel (flavors: {flavors}), not LightGBM; "
            "cannot serve it natively"
        )
    return UnservableModel(f"model is not LightGBM (flavors: {flavors}); cannot serve it natively")


def mlflow_model_file(local: Path, spec: Model) -> ModelFile:
    """The file an MLflow model keeps its LightGBM model in, read from MLmodel alone."""
    if "lightgbm" in spec.flavors:
        conf = spec.flavors["lightgbm"]
        model_class = conf.get("model_class", BOOSTER_CLASS)
        if model_class != BOOSTER_CLASS:
            refuse_unless_lightgbm(model_class)
        # MLflow wrote LGBMClassifiers with cloudpickle before it recorded a format.
        serialization = (
            "lightgbm-text"
            if model_class == BOOSTER_CLASS
            else conf.get("serialization_format", "cloudpickle")
        )
        data, source = conf.get("data", "model.lgb"), "mlflow-lightgbm"
    elif "sklearn" in spec.flavors:
        conf = spec.flavors["sklearn"]
        # MLflow's sklearn flavour defaulted to pickle before it recorded a format.
        serialization = conf.get("serialization_format", "pickle")
        data, source = conf.get("pickled_model", "model.pkl"), "mlflow-sklearn"
    else:
        raise _undeclared_flavor(spec)
    if serialization not in ("lightgbm-text", "skops", *safe_load.PICKLE_FORMATS):
        raise UnservableModel(f"model's serialization_format {serialization!r} is unknown")
    path = local / data
    if not path.is_file():
        raise BrokenRun(f"LightGBM model files are incomplete or corrupt: {data} is missing")
    return ModelFile(path, serialization, source)


def check_before_loading(model_file: ModelFile, allow_pickle: bool) -> None:
    """What can be refused without building the model: a pickle without --allow-pickle, a
    skops file holding something other than LightGBM."""
    safe_load.check_may_unpickle(model_file.path, model_file.serialization, allow_pickle)
    if model_file.serialization == "skops":
        refuse_unless_lightgbm(
            safe_load.skops_class(model_file.path),
            safe_load.skops_pipeline_steps(model_file.path),
        )
        problem = skops_steps.refused_step(model_file.path)
        if problem:
            raise UnservableModel(problem)


def read_model(model_file: ModelFile, allow_pickle: bool) -> ReadModel:
    """Load the file in the way its serialization allows and take the booster out."""
    check_before_loading(model_file, allow_pickle)
    path = model_file.path
    if model_file.serialization == "lightgbm-text":
        try:
            return ReadModel(lgb.Booster(model_file=str(path)))
        except lgb.basic.LightGBMError as error:
            reason = str(error).splitlines()[0][:200]
            raise BrokenRun(
                f"LightGBM model files are incomplete or corrupt: {path.name}: {reason}"
            ) from None
    if model_file.serialization == "skops":
        return model_of(safe_load.load_skops(path))
    return model_of(safe_load.load_pickled(path, model_file.serialization, allow_pickle))
