"""Classifier heads of a `reason` artifact: they turn texts (and their e5 vectors) into logits.

Stored without pickle, so loading a user's version runs no code from it:
- `LinearHead` — a linear model over char n-gram TF-IDF features, e5 vectors, or both side by side
  (`kind` "tfidf-linear", "e5-linear", "hybrid-linear"); vocabulary/idf/weights as JSON + .npy.
  With a `SubjectBlock` ("subject-hybrid-linear") it also reads the request's subject line: its own
  TF-IDF and its e5 vector, appended to the text features.
- `CharBertHead` — a small BERT over single characters (transformers `save_pretrained` + vocab.json).
Probabilities are `softmax(logits / temperature)`, the temperature fitted on out-of-fold predictions.

>>> head = load_head(artifact_dir / "classifier", spec)
>>> head.logits(["路灯坏了"], vectors).shape
(1, 7)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from hub.errors import ModelLoadError


class Head(Protocol):
    kind: str
    uses_embeddings: bool

    def logits(self, texts: Sequence[str], vectors: np.ndarray | None) -> np.ndarray: ...

    def save(self, directory: Path) -> dict: ...


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / max(float(temperature), 1e-6)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class TfidfFeatures:
    """Char n-gram TF-IDF (sublinear tf, l2 norm) with a fixed vocabulary: what sklearn's
    `TfidfVectorizer(analyzer="char", sublinear_tf=True)` computes once fitted."""

    vocabulary: tuple[str, ...]
    idf: np.ndarray
    ngram_range: tuple[int, int]
    analyzer: str = "char"

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        counts = CountVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, lowercase=True,
                                 vocabulary={t: i for i, t in enumerate(self.vocabulary)}).transform(texts)
        counts = counts.astype(np.float64)
        counts.data = np.log(counts.data) + 1.0  # sublinear tf
        return normalize(counts @ sp.diags(self.idf), norm="l2", copy=False).tocsr()

    @classmethod
    def from_vectorizer(cls, vectorizer) -> TfidfFeatures:
        vocab = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(tuple(vocab), np.asarray(vectorizer.idf_, dtype=np.float64),
                   tuple(vectorizer.ngram_range), vectorizer.analyzer)


@dataclass(frozen=True)
class SubjectBlock:
    """The subject line's features: `tfidf_weight * tfidf_s(subject) | embedding_weight * e5(subject)`,
    with a vocabulary of its own (subjects are short titles, their n-grams weigh differently)."""

    tfidf: TfidfFeatures
    tfidf_weight: float
    embedding_weight: float

    def features(self, subjects: Sequence[str], vectors: np.ndarray | None) -> sp.csr_matrix:
        if vectors is None:
            raise ValueError("the subject block needs e5 vectors of the subjects")
        return sp.hstack([self.tfidf.transform(subjects) * self.tfidf_weight,
                          sp.csr_matrix(vectors * self.embedding_weight)]).tocsr()


@dataclass(frozen=True)
class LinearHead:
    """logits = [tfidf(text) | embedding_weight * e5(text) (| subject block)] @ coef.T + intercept."""

    kind: str
    coef: np.ndarray  # (n_classes, n_features)
    intercept: np.ndarray  # (n_classes,)
    tfidf: TfidfFeatures | None = None
    embedding_weight: float = 0.0  # 0: no e5 part
    subject: SubjectBlock | None = None  # set: every row needs a subject and its e5 vector

    @property
    def uses_embeddings(self) -> bool:
        return self.embedding_weight > 0

    @property
    def uses_subject(self) -> bool:
        return self.subject is not None

    def features(self, texts: Sequence[str], vectors: np.ndarray | None, subjects: Sequence[str] | None = None,
                 subject_vectors: np.ndarray | None = None):
        parts = []
        if self.tfidf is not None:
            parts.append(self.tfidf.transform(texts))
        if self.uses_embeddings:
            if vectors is None:
                raise ValueError(f"{self.kind} needs e5 vectors")
            parts.append(sp.csr_matrix(vectors * self.embedding_weight))
        if self.subject is not None:
            if subjects is None:
                raise ValueError(f"{self.kind} needs the subjects")
            parts.append(self.subject.features(subjects, subject_vectors))
        return sp.hstack(parts).tocsr() if len(parts) > 1 else parts[0]

    def logits(self, texts: Sequence[str], vectors: np.ndarray | None, subjects: Sequence[str] | None = None,
               subject_vectors: np.ndarray | None = None) -> np.ndarray:
        x = self.features(texts, vectors, subjects, subject_vectors)
        return np.asarray(x @ self.coef.T) + self.intercept

    def save(self, directory: Path) -> dict:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "coef.npy", self.coef.astype(np.float32))
        np.save(directory / "intercept.npy", self.intercept.astype(np.float32))
        spec = {"kind": self.kind, "embedding_weight": self.embedding_weight}
        if self.tfidf is not None:
            np.save(directory / "idf.npy", self.tfidf.idf)
            (directory / "vocabulary.json").write_text(
                json.dumps(list(self.tfidf.vocabulary), ensure_ascii=False), encoding="utf-8")
            spec["tfidf"] = {"ngram_range": list(self.tfidf.ngram_range), "analyzer": self.tfidf.analyzer}
        if self.subject is not None:
            t = self.subject.tfidf
            np.save(directory / "subject_idf.npy", t.idf)
            (directory / "subject_vocabulary.json").write_text(
                json.dumps(list(t.vocabulary), ensure_ascii=False), encoding="utf-8")
            spec["subject"] = {"ngram_range": list(t.ngram_range), "analyzer": t.analyzer,
                               "tfidf_weight": self.subject.tfidf_weight,
                               "embedding_weight": self.subject.embedding_weight}
        return spec

    @classmethod
    def load(cls, directory: Path, spec: dict) -> LinearHead:
        tfidf = _load_tfidf(directory, "", spec["tfidf"]) if "tfidf" in spec else None
        subject = None
        if "subject" in spec:
            s = spec["subject"]
            subject = SubjectBlock(_load_tfidf(directory, "subject_", s), float(s["tfidf_weight"]),
                                   float(s["embedding_weight"]))
        return cls(spec["kind"], np.load(directory / "coef.npy").astype(np.float64),
                   np.load(directory / "intercept.npy").astype(np.float64), tfidf,
                   float(spec.get("embedding_weight", 0.0)), subject)


def _load_tfidf(directory: Path, prefix: str, spec: dict) -> TfidfFeatures:
    vocab = json.loads((directory / f"{prefix}vocabulary.json").read_text(encoding="utf-8"))
    return TfidfFeatures(tuple(vocab), np.load(directory / f"{prefix}idf.npy"), tuple(spec["ngram_range"]),
                         spec["analyzer"])


class CharBertHead:
    """A compact BERT over characters (transformers), trained from scratch by `training.candidates`.

    >>> CharBertHead.load(Path("classifier"), {"kind": "char-bert", "max_len": 160}).logits(["路灯坏了"], None)
    """

    kind = "char-bert"
    uses_embeddings = False
    PAD, UNK, CLS = 0, 1, 2

    def __init__(self, model, itos: Sequence[str], max_len: int, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.itos = list(itos)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.max_len = int(max_len)
        self.device = device

    def encode(self, texts: Sequence[str]):
        import torch

        rows = []
        for text in texts:
            ids = [self.CLS] + [self.stoi.get(c, self.UNK) for c in text[: self.max_len - 1]]
            rows.append(ids + [self.PAD] * (self.max_len - len(ids)))
        ids = torch.tensor(rows, dtype=torch.long)
        return ids, (ids != self.PAD).long()

    def logits(self, texts: Sequence[str], vectors: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                ids, mask = self.encode(texts[start : start + batch_size])
                out.append(self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                           .logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.num_labels))

    def save(self, directory: Path) -> dict:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)  # config.json + model.safetensors
        (directory / "vocab.json").write_text(json.dumps(self.itos, ensure_ascii=False), encoding="utf-8")
        return {"kind": self.kind, "max_len": self.max_len}

    @classmethod
    def load(cls, directory: Path, spec: dict, device: str = "cpu") -> CharBertHead:
        from gpu.compat import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision, which needs the shim on CPU torch
        from transformers import BertForSequenceClassification

        model = BertForSequenceClassification.from_pretrained(directory, local_files_only=True,
                                                              use_safetensors=True)  # never a pickle
        itos = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        return cls(model, itos, int(spec["max_len"]), device)


def load_head(directory: Path, spec: dict, device: str = "cpu") -> Head:
    kind = spec.get("kind")
    try:
        if kind in ("tfidf-linear", "e5-linear", "hybrid-linear", "subject-hybrid-linear"):
            return LinearHead.load(directory, spec)
        if kind == "char-bert":
            return CharBertHead.load(directory, spec, device)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the {kind} classifier from {directory}: {exc}") from exc
    raise ModelLoadError(f"unknown classifier kind {kind!r} in {directory}")
