"""A skops-saved Pipeline's steps, read from the file's schema without building anything: a step
that is not one the service runs (a team's own class, a function in a FunctionTransformer) is
refused by its name and class before skops is asked to build it.

skops writes an object as {"__class__", "__module__", "__loader__", "content"}, an estimator's
attributes as a DictNode in its content, a step as a TupleNode of its name (a JSON string) and
the estimator, and a function as a FunctionNode naming its module and name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scoring.importing.safe_load import schema_of
from scoring.stored_model.pipeline_steps import (
    COLUMN_TRANSFORMER,
    FUNCTION_TRANSFORMER,
    PIPELINE,
    REMEDY,
    SERVED_STEPS,
    short,
)

Node = dict[str, Any]


def _qualified(node: Node) -> str:
    return f"{node.get('__module__', '?')}.{node.get('__class__', '?')}"


def _attributes(node: Node) -> dict[str, Node]:
    content = node.get("content")
    if isinstance(content, dict) and isinstance(content.get("content"), dict):
        return content["content"]
    return {}


def _items(node: Node | None) -> list[Node]:
    content = (node or {}).get("content")
    return [item for item in content if isinstance(item, dict)] if isinstance(content, list) else []


def _text(node: Node) -> str | None:
    """A JSON-stored string ('"pre"'), or None for anything else ('drop' is a string too)."""
    if node.get("__class__") != "str" or not node.get("is_json"):
        return None
    try:
        value = json.loads(node.get("content", "null"))
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _steps(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    """Every estimator node under a Pipeline or ColumnTransformer node, with its path."""
    kind, attributes = _qualified(node), _attributes(node)
    if kind == PIPELINE:
        entries = _items(attributes.get("steps"))
    elif kind == COLUMN_TRANSFORMER:
        entries = _items(attributes.get("transformers_") or attributes.get("transformers"))
    else:
        return
    for entry in entries:
        parts = _items(entry)
        if len(parts) < 2:
            continue
        name, inner = _text(parts[0]) or "?", parts[1]
        if inner.get("__class__") == "str" or inner.get("__loader__") == "JsonNode":
            continue  # 'drop', 'passthrough', None
        inner_path = f"{path}/{name}" if path else name
        yield inner_path, inner
        yield from _steps(inner, inner_path)


def _function_problem(node: Node) -> str | None:
    if node.get("__loader__") == "JsonNode" and node.get("content") == "null":
        return None
    function = node.get("__loader__") == "FunctionNode"
    if (
        function
        and node.get("__module__") == "numpy"
        and isinstance(getattr(np, str(node.get("__class__")), None), np.ufunc)
    ):
        return None
    return _qualified(node) if function else str(node.get("__class__"))


def refused_step(path: Path) -> str | None:
    """Why a skops-saved Pipeline's steps cannot be served, naming the first that is not a
    served step; None for any other file, or when every step before the last is served."""
    schema = schema_of(path)
    if _qualified(schema) != PIPELINE:
        return None
    steps = list(_steps(schema, ""))
    top = [p for p, _ in steps if "/" not in p]
    last = top[-1] if top else None
    for step_path, node in steps:
        if step_path == last:
            continue  # the classifier, checked as a LightGBM one
        kind = _qualified(node)
        if kind not in SERVED_STEPS:
            return (
                f"step '{step_path}' is a {short(kind)} ({kind}), which the service does not "
                f"run; {REMEDY}"
            )
        if kind == FUNCTION_TRANSFORMER:
            for role in ("func", "inverse_func"):
                function = _attributes(node).get(role)
                named = _function_problem(function) if function else None
                if named:
                    return (
                        f"step '{step_path}' is a FunctionTransformer whose {role} is {named}, "
                        f"not a NumPy ufunc: its code would run in the service; {REMEDY}"
                    )
    return None
