"""Capability `reason`: hotline request classification, routing and similar-case retrieval.

The default model is made by the training pipeline (`training.textcls.train_default`, handed to the
bootstrap by `serving.defaults`) from the shipped labelled messages, so the bootstrap version and a
`hub train reason` version are the same kind of artifact. This package never imports `training`.

>>> from models.textcls import HotlineClassifier
>>> clf = HotlineClassifier(); clf.load(Path("artifact"), "cpu")
"""

from __future__ import annotations

from models.textcls.capability import HotlineClassifier, prepare_text
from models.textcls.schema import (
    AddCasesRequest,
    AddCasesResponse,
    CategoryScore,
    NewCase,
    ReasonRequest,
    ReasonResponse,
    SimilarCase,
)

__all__ = [
    "AddCasesRequest", "AddCasesResponse", "CategoryScore", "HotlineClassifier", "NewCase", "ReasonRequest",
    "ReasonResponse", "SimilarCase", "prepare_text",
]

