"""Challenger-vs-champion gate and artifact evaluation for `reason`.

Both models are loaded the way serving loads them (`HotlineClassifier.load`) and scored on the same
held-out texts; the challenger is promoted only if it beats the champion by more than `min_delta`
on the gate metric (macro-F1 by default: the classes are imbalanced).

With subjects in the held-out data, the gate metric is scored as serving answers those requests
(subject head where a subject is given; a champion without one answers from text), so a better
subject head can win; and the challenger's text-only score must not fall below the champion's
(`text_regression`), because hotline calls never carry a subject and are always answered by the
text head: a gain for web forms must not be paid for by callers.

>>> score = evaluate_artifact(artifact_dir, texts, labels)
>>> decide(challenger=score, champion=champion_score, champion_version="3")
GateDecision(promote=True, metric='macro_f1', challenger=0.84, champion=0.80, ...)
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Score:
    accuracy: float
    macro_f1: float
    n: int
    subject_rows: int = 0  # rows answered by the subject-aware head (the rest: the text head)

    @property
    def inputs(self) -> str:
        if self.subject_rows == 0:
            return "text"
        return "subject + text" if self.subject_rows == self.n else f"subject + text on {self.subject_rows} rows, text on the rest"

    def get(self, metric: str) -> float:
        return float(getattr(self, metric))


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None
    n: int
    reason: str


def evaluate_artifact(artifact_dir: Path, texts: Sequence[str], labels: Sequence[str], *,
                      cache_dir: Path | None = None, batch_size: int = 64, progress: bool = False,
                      subjects: Sequence[str] | None = None) -> Score:
    """Accuracy and macro-F1 of the artifact's top category on labelled texts. Labels the model
    does not know count as errors (a champion trained on other categories scores low, not crashes).
    With `subjects`, rows with a non-empty one go to the subject head when the artifact has one."""
    from sklearn.metrics import f1_score

    from models.textcls.capability import HotlineClassifier, prepare_text

    with tempfile.TemporaryDirectory(prefix="reason-eval-") as tmp:
        clf = HotlineClassifier(data_dir=Path(tmp), embedding_cache=cache_dir)  # no run-time cases here
        clf.load(Path(artifact_dir), "cpu")
        prepared = [prepare_text(t, clf.config.max_text_chars)[0] for t in texts]
        heads = [prepare_text(t, clf.config.max_text_chars)[0] for t in subjects] if subjects is not None else None
        subject_rows = int(clf.subject_rows(heads, len(prepared)).sum())
        steps = range(0, len(prepared), batch_size)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="evaluating", unit="batch")
        predicted: list[str] = []
        for start in steps:
            probs = clf.classify(prepared[start : start + batch_size],
                                 subjects=None if heads is None else heads[start : start + batch_size])
            predicted += [clf.labels[j] for j in probs.argmax(axis=1)]
    truth = np.asarray(list(labels), dtype=object)
    guess = np.asarray(predicted, dtype=object)
    classes = sorted(set(truth))
    return Score(accuracy=float((truth == guess).mean()),
                 macro_f1=float(f1_score(truth, guess, labels=classes, average="macro", zero_division=0)),
                 n=len(truth), subject_rows=subject_rows)


def text_regression(challenger_text: Score, champion_text: Score | None, metric: str = "macro_f1") -> str | None:
    """Why the challenger must not be promoted because its text-only head got worse, or None."""
    if champion_text is None or challenger_text.get(metric) >= champion_text.get(metric):
        return None
    return (f"the text-only head (every hotline call) would get worse: {metric} {challenger_text.get(metric):.4f} "
            f"< champion's {champion_text.get(metric):.4f}")


def decide(challenger: Score, champion: Score | None, champion_version: str | None, *,
           metric: str = "macro_f1", min_delta: float = 0.0) -> GateDecision:
    new = challenger.get(metric)
    if champion is None:
        return GateDecision(True, metric, new, None, champion_version, challenger.n,
                            f"no champion yet: challenger {metric} {new:.4f} becomes champion")
    old = champion.get(metric)
    if new > old + min_delta:
        reason = f"challenger {metric} {new:.4f} beats champion v{champion_version} {old:.4f} (n={challenger.n})"
        return GateDecision(True, metric, new, old, champion_version, challenger.n, reason)
    reason = (f"challenger {metric} {new:.4f} does not beat champion v{champion_version} {old:.4f}"
              f"{f' by more than {min_delta}' if min_delta else ''} (n={challenger.n}): champion stays")
    return GateDecision(False, metric, new, old, champion_version, challenger.n, reason)
