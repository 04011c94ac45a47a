"""Each API method of the running service is bound once, not on every request.

BentoML 1.4 looks an API method up on the service instance twice per request
(`getattr(instance, name).local`), and its descriptor (`APIMethod.__get__`) builds a new wrapper
each time: `inspect.signature` of the function, `functools.wraps`, a replaced signature. That
was 7% of a worker's CPU on single-row requests. Here the first lookup made once the server
has set the instance up (its `__self_proxy__` exists) is kept in the instance's own `__dict__`,
which Python consults before a non-data descriptor such as APIMethod, so later lookups return
the same, identical wrapper.
"""

from __future__ import annotations

from typing import Any

from _bentoml_sdk.method import APIMethod

# BentoML's own descriptor, kept for the canary test that checks it still rebinds on every access.
UPSTREAM_GET = APIMethod.__get__

_BOUND: set[str] = set()  # names of API methods bound once in this process


def _get_once(self: APIMethod, instance: Any, owner: type) -> Any:
    bound = UPSTREAM_GET(self, instance, owner)
    # Only once the server has finished setting the instance up: before that, BentoML's own
    # proxy (which the bound method points at) does not exist yet.
    if instance is not None and getattr(instance, "__self_proxy__", None) is not None:
        vars(instance)[self.name] = bound
        _BOUND.add(self.name)
    return bound


def install() -> None:
    APIMethod.__get__ = _get_once  # type: ignore[method-assign, assignment]


def report() -> dict[str, object]:
    """Whether API methods are bound once here, and which were."""
    return {"active": APIMethod.__get__ is _get_once, "bound_once": sorted(_BOUND)}
