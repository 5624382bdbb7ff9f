"""Wire types of the `reason` capability (pydantic at the edge only).

>>> ReasonRequest(text="小区门口的路灯坏了两个星期", top_k=3)
"""

from __future__ import annotations

from pydantic import Field

from hub.contract import Response, WireModel


class ReasonRequest(WireModel):
    text: str
    # the message's subject line (web form title); non-empty: the subject-aware head answers when the
    # model has one. Cut at max_text_chars like the text; a hotline transcript has none.
    subject: str = Field("", max_length=500)
    top_k: int | None = Field(None, ge=1, le=20)  # categories returned; None: configs/reason.yaml
    cases_k: int | None = Field(None, ge=0, le=20)  # similar cases returned; 0: skip retrieval


class CategoryScore(WireModel):
    category: str
    probability: float  # calibrated (temperature-scaled on out-of-fold predictions)
    department: str


class SimilarCase(WireModel):
    id: str
    subject: str
    score: float  # cosine similarity of e5 embeddings, -1..1
    category: str | None = None  # known only for labelled cases
    reply_excerpt: str | None = None  # the official answer, when the case has one
    source: str  # "replies" | "labelled" | "added"


class ReasonResponse(Response):
    category: str  # best category
    confidence: float  # its calibrated probability
    department: str  # from the routing table of configs/reason.yaml
    needs_review: bool
    review_reasons: list[str]  # "low_confidence", "unlike_known_cases", "unrouted_category"
    top_categories: list[CategoryScore]  # best first, top_k of them
    similar_cases: list[SimilarCase]
    truncated: bool = False  # the text was longer than max_text_chars and was cut
    inputs: list[str] = ["text"]  # the request fields the classifier read: ["text"] or ["subject", "text"]


class NewCase(WireModel):
    """A resolved case to add to the similar-case index."""

    id: str = Field(min_length=1, max_length=128)
    subject: str = Field("", max_length=500)
    text: str = Field(min_length=1, max_length=20000)
    reply: str = Field("", max_length=20000)
    category: str | None = Field(None, max_length=100)


class AddCasesRequest(WireModel):
    cases: list[NewCase] = Field(min_length=1, max_length=1000)


class AddCasesResponse(WireModel):
    added: int  # new ids
    updated: int  # ids that existed and were replaced
    total_cases: int  # size of the index now
