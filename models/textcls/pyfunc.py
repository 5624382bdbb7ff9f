"""MLflow `python_function` loader of a `reason` artifact (named in its MLmodel), so ML engineers can
score a registered version with plain MLflow:

>>> m = mlflow.pyfunc.load_model("models:/hotline-classifier@champion")
>>> m.predict(pd.DataFrame({"text": ["小区门口的路灯坏了"]}))
   category  confidence  department  needs_review
"""

from __future__ import annotations

import tempfile
from pathlib import Path


class _PyfuncReason:
    def __init__(self, artifact_dir: Path) -> None:
        from models.textcls.capability import HotlineClassifier

        # run-time case additions belong to a serving hub, not to an offline scoring session
        self._journal_dir = tempfile.TemporaryDirectory(prefix="reason-pyfunc-")
        self.classifier = HotlineClassifier(data_dir=Path(self._journal_dir.name))
        self.classifier.load(artifact_dir, "cpu")

    def predict(self, model_input, params=None):
        import pandas as pd

        from hub.errors import HubError
        from models.textcls.schema import ReasonRequest

        texts = model_input["text"].astype(str).tolist() if hasattr(model_input, "columns") else list(model_input)
        answers = self.classifier.predict_batch([ReasonRequest(text=t, cases_k=0) for t in texts])
        rows = [{"category": None, "confidence": None, "department": None, "needs_review": True}
                if isinstance(a, HubError) else
                {"category": a.category, "confidence": a.confidence, "department": a.department,
                 "needs_review": a.needs_review} for a in answers]
        return pd.DataFrame(rows, columns=["category", "confidence", "department", "needs_review"])


def _load_pyfunc(data_path: str) -> _PyfuncReason:
    return _PyfuncReason(Path(data_path))
