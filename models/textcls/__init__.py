"""Capability `reason`: hotline request classification, routing and similar-case retrieval.

The default model is made by the training pipeline (`training.textcls`) from the shipped labelled
messages, so the bootstrap version and a `hub train reason` version are the same kind of artifact.

>>> from models.textcls import HotlineClassifier, prepare_default
>>> prepare_default(Path("../shared"), Path("artifact"))
>>> clf = HotlineClassifier(); clf.load(Path("artifact"), "cpu")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    "ReasonResponse", "SimilarCase", "prepare_default", "prepare_text",
]


def prepare_default(shared_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Train the default model from `shared_dir/data/text` into `out_dir` (no MLflow side effects).

    The default IS the training pipeline's output (fast candidate set, fixed seeds), which is why this
    one function reaches into `training`: there are no pretrained weights to copy for this task.
    """
    from training.textcls import train_default

    return train_default(Path(shared_dir), Path(out_dir))
