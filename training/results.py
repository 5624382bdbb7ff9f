"""What a `reason` training run is asked (TrainConfig) and what it found (CandidateResult per
candidate, TrainResult for the run): the types that the pipeline (training/textcls.py), its model
card (training/report.py) and its MLflow logging (training/tracking.py) share, in a module of their
own so that none of those three has to import another for a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.textcls.encoder import EncoderSpec
from models.textcls.heads import Head
from training.candidates import NAMES, BertParams
from training.data import LabelledData
from training.metrics import ClassMetrics, wilson_interval


@dataclass(frozen=True)
class TrainConfig:
    candidates: tuple[str, ...] = NAMES
    folds: int = 5
    heldout_fraction: float = 0.2
    seed: int = 0
    bert: BertParams = field(default_factory=BertParams)
    progress: bool = True
    subject_head: bool = True  # also train the subject-aware head when the data has subjects


@dataclass(frozen=True)
class CandidateResult:
    name: str
    params: dict[str, Any]
    cv: ClassMetrics  # out-of-fold over all rows
    cv_accuracy_std: float  # across folds
    heldout: ClassMetrics  # fitted on the train split, scored on the held-out split
    temperature: float
    ece_raw: float
    ece_calibrated: float
    fit_s: float
    head: Head = field(repr=False)
    heldout_probs: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TrainResult:
    data: LabelledData
    config: TrainConfig
    train_rows: np.ndarray
    test_rows: np.ndarray
    candidates: dict[str, CandidateResult]
    best_name: str
    retrieval: dict[str, float]
    review: dict[str, Any]
    case_count: int
    reply_case_count: int
    encoder_spec: EncoderSpec
    metadata: dict[str, Any]
    artifact_dir: Path
    subject: CandidateResult | None = None  # the subject-aware head (None: the data had no subjects)

    @property
    def best(self) -> CandidateResult:
        return self.candidates[self.best_name]

    def evaluated(self) -> dict[str, CandidateResult]:
        """Every evaluated head: the text candidates, then the subject head if there is one."""
        return {**self.candidates, **({self.subject.name: self.subject} if self.subject else {})}

    def metrics(self) -> dict[str, Any]:
        """Every number of the run, JSON-ready (metrics.json of the artifact)."""
        low, high = wilson_interval(self.best.heldout.accuracy, len(self.test_rows))
        out: dict[str, Any] = {"selected": self.best_name, "retrieval": self.retrieval, "review": self.review,
                               "heldout_n": len(self.test_rows), "heldout_accuracy_ci95": [low, high]}
        if self.subject is not None:
            out["subject_head"] = self.subject.name
            out["subject_heldout_accuracy_ci95"] = list(wilson_interval(self.subject.heldout.accuracy,
                                                                        len(self.test_rows)))
        for name, c in self.evaluated().items():
            out[name] = {**c.cv.as_dict("cv_"), **c.heldout.as_dict("heldout_"), "cv_accuracy_std": c.cv_accuracy_std,
                         "temperature": c.temperature, "ece_raw": c.ece_raw, "ece_calibrated": c.ece_calibrated,
                         "fit_s": c.fit_s, "cv_confusion": c.cv.confusion.tolist(),
                         "heldout_confusion": c.heldout.confusion.tolist(), "params": c.params}
        return out
