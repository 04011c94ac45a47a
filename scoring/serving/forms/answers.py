"""The scoring routes' answers, as the OpenAPI document shows them: one per application."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from scoring.core.reasons import Reason


class Prediction(BaseModel):
    probability_of_default: float = Field(..., ge=0, le=1)
    decision: Literal["approve", "reject"]
    threshold: float
    model: str = Field(..., description="Bento model tag that scored this application")


class PredictionWithReasons(Prediction):
    reasons: list[Reason] | None = Field(
        ..., description="why it was rejected, main reason first; null when approved"
    )
    reason_source: str | None = Field(
        ..., description="the reason-code table (source, hash) or the feature-name fallback"
    )


class Contribution(BaseModel):
    feature: str
    value: float | str | bool | None = Field(
        ...,
        description="the feature's input value: a number, a category or a boolean (null = missing)",
    )
    contribution: float = Field(..., description="log-odds contribution (TreeSHAP)")


class Explanation(BaseModel):
    probability_of_default: float
    raw_score: float = Field(..., description="log-odds: base_value + all contributions")
    base_value: float
    top_contributions: list[Contribution]
