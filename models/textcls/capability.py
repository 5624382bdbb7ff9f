"""Capability `reason`: classify a 12345 hotline request, route it, find similar past cases.

One batch = one e5 embedding call, one classifier call and one faiss search for all its texts.
Per item: empty text -> 400 (that item only), text over `max_request_chars` -> 413, text over
`max_text_chars` -> cut and answered with `truncated: true`.
Two heads: a request with a non-empty `subject` is answered by the subject-aware head when the
artifact has one (5-fold CV 0.86 vs 0.81 text only); every other request by the text head, which is
what a model trained with subjects would do badly on (a subject head shown a blank subject: 0.79).
`inputs` in the response says which fields were read.

>>> clf = HotlineClassifier(); clf.load(Path("artifact"), "cpu")
>>> r = clf.predict_batch([ReasonRequest(text="小区门口的路灯坏了两个星期，请尽快维修")])[0]
>>> r.category, r.department, r.needs_review
('城乡建设', '市住房和城乡建设局', False)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np

from hub.contract import prepare_each
from hub.errors import HubError, InvalidInput, ModelLoadError, PayloadTooLarge
from models.textcls.artifact import read_hub_json
from models.textcls.case_library import CaseLibrary
from models.textcls.cases import Case, CaseIndex
from models.textcls.config import ReasonConfig
from models.textcls.encoder import E5Encoder, EncoderSpec, clean
from models.textcls.heads import load_head, softmax
from models.textcls.schema import (
    AddCasesRequest,
    AddCasesResponse,
    CategoryScore,
    ReasonRequest,
    ReasonResponse,
    SimilarCase,
)

log = logging.getLogger(__name__)


def prepare_text(text: str, max_chars: int) -> tuple[str, bool]:
    """The text the classifier sees (whitespace collapsed, cut at max_chars) and whether it was cut."""
    cleaned = clean(text)
    return cleaned[:max_chars], len(cleaned) > max_chars


class HotlineClassifier:
    """Category (calibrated top-k), department, review flag and similar cases for hotline texts.

    >>> clf = HotlineClassifier(data_dir=Path(".hub/data/reason"))
    >>> clf.load(artifact_dir, "cpu")
    >>> clf.add_cases(AddCasesRequest(cases=[NewCase(id="c1", subject="路灯", text="路灯坏了", reply="已修复")]))
    """

    name: ClassVar[str] = "reason"
    request_type: ClassVar[type] = ReasonRequest
    response_type: ClassVar[type] = ReasonResponse
    extra_routes: ClassVar[dict[str, tuple[type, str]]] = {"cases": (AddCasesRequest, "add_cases")}

    def __init__(self, data_dir: Path | None = None, config: ReasonConfig | None = None,
                 embedding_cache: Path | None = None) -> None:
        self._data_dir = data_dir
        self._config = config
        self._embedding_cache = embedding_cache  # training/eval only: serving never caches

    # ---- loading --------------------------------------------------------------------------------
    def load(self, artifact_dir: Path, device: str) -> None:
        artifact_dir = Path(artifact_dir)
        hub = read_hub_json(artifact_dir)
        self.labels: list[str] = list(hub["labels"])
        spec = hub["classifier"]
        self.temperature = float(spec.get("temperature", 1.0))
        self.head = load_head(artifact_dir / spec.get("dir", "classifier"), spec, device)
        subject_spec = hub.get("subject_classifier")  # absent in artifacts made before it existed
        self.subject_head = (None if subject_spec is None else
                             load_head(artifact_dir / subject_spec.get("dir", "classifier-subject"), subject_spec,
                                       device))
        self.subject_temperature = float((subject_spec or {}).get("temperature", 1.0))
        stored = hub["encoder"]
        self.encoder = E5Encoder(
            EncoderSpec(**{k: stored[k] for k in EncoderSpec.__dataclass_fields__ if k in stored}),
            cache_dir=self._embedding_cache)
        self.encoder.check_identity(stored)
        seed = partial(CaseIndex.load, artifact_dir / "cases")  # a new journal generation starts from it
        seed_index = seed()
        if seed_index.dim != self.encoder.spec.dim:
            raise ModelLoadError(f"case index has {seed_index.dim}-d vectors, the encoder makes {self.encoder.spec.dim}")
        self.config = self._config or ReasonConfig.load()
        unrouted = [c for c in self.labels if c not in self.config.routing]
        if unrouted:
            log.warning("reason: categories without a department in the routing table: %s", unrouted)
        if self._data_dir is None:
            from hub.settings import get_settings

            self._data_dir = get_settings().data_dir / "reason"
        self.library = CaseLibrary(seed_index, seed, self._data_dir, self.config.case_retention,
                                   self.encoder.spec.fingerprint, self.encoder.encode)
        self.metadata = dict(hub.get("metadata", {}))
        log.info("reason: %s classifier, %d labels, %d cases (%d added at run time)",
                 spec.get("kind"), len(self.labels), len(self.cases), self.library.replayed)

    @property
    def cases(self) -> CaseIndex:
        """The similar-case index now: seed corpus + cases added at run time (see CaseLibrary)."""
        return self.library.index

    def sample_request(self) -> ReasonRequest:
        return ReasonRequest(text="小区门口的路灯坏了两个星期，晚上很危险，请尽快派人维修。")

    # ---- inference ------------------------------------------------------------------------------
    def subject_rows(self, subjects: Sequence[str] | None, n: int) -> np.ndarray:
        """Which rows the subject head answers: a non-empty subject and a model that has the head."""
        if subjects is None or self.subject_head is None:
            return np.zeros(n, dtype=bool)
        return np.array([bool(s) for s in subjects], dtype=bool)

    def classify(self, texts: Sequence[str], vectors: np.ndarray | None = None,
                 subjects: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated probabilities `(n, len(labels))` for already prepared texts (and subjects)."""
        texts = list(texts)
        with_subject = self.subject_rows(subjects, len(texts))
        if vectors is None and (self.head.uses_embeddings or with_subject.any()):
            vectors = self.encoder.encode(texts)
        probs = np.zeros((len(texts), len(self.labels)))
        rows = np.flatnonzero(~with_subject)
        if rows.size:
            probs[rows] = softmax(self.head.logits([texts[i] for i in rows],
                                                   None if vectors is None else vectors[rows]), self.temperature)
        rows = np.flatnonzero(with_subject)
        if rows.size:
            picked = [subjects[i] for i in rows]
            logits = self.subject_head.logits([texts[i] for i in rows], vectors[rows], picked,
                                              self.encoder.encode(picked))
            probs[rows] = softmax(logits, self.subject_temperature)
        return probs

    def _check(self, request: ReasonRequest) -> tuple[str, str, bool]:
        if not request.text or not request.text.strip():
            raise InvalidInput("text is empty", field="text")
        if len(request.text) > self.config.max_request_chars:
            raise PayloadTooLarge(f"text has {len(request.text)} characters; the limit is "
                                  f"{self.config.max_request_chars}", field="text")
        for field in ("top_k", "cases_k"):
            value = getattr(request, field)
            if value is not None and value > self.config.max_k:
                raise InvalidInput(f"{field} must be <= {self.config.max_k}", field=field)
        text, truncated = prepare_text(request.text, self.config.max_text_chars)
        return text, prepare_text(request.subject, self.config.max_text_chars)[0], truncated

    def predict_batch(self, requests: Sequence[ReasonRequest]) -> list[ReasonResponse | HubError]:
        self.library.refresh()  # cases other replicas added, a compacted journal
        batch = prepare_each(requests, self._check)
        out, good = batch.out, batch.slots
        texts = [text for text, _, _ in batch.items]
        subjects = [subject for _, subject, _ in batch.items]
        cut = [truncated for _, _, truncated in batch.items]
        if good:
            vectors = self.encoder.encode(texts)
            probs = self.classify(texts, vectors, subjects)
            with_subject = self.subject_rows(subjects, len(texts))
            cfg = self.config
            k_cases = max(max((requests[i].cases_k if requests[i].cases_k is not None else cfg.cases_k)
                              for i in good), 1)  # >= 1: the nearest case also tells whether the text is off-topic
            hits = self.cases.search(vectors, k_cases)
            for row, i in enumerate(good):
                out[i] = self._answer(requests[i], probs[row], hits[row], cut[row],
                                      ["subject", "text"] if with_subject[row] else ["text"])
        return out

    def _answer(self, request: ReasonRequest, probs: np.ndarray, hits: list[tuple[Case, float]],
                truncated: bool, inputs: list[str]) -> ReasonResponse:
        cfg = self.config
        top_k = min(request.top_k or cfg.top_k, len(self.labels))
        cases_k = request.cases_k if request.cases_k is not None else cfg.cases_k
        order = np.argsort(-probs)[:top_k]
        top = [CategoryScore(category=self.labels[j], probability=round(float(probs[j]), 4),
                             department=cfg.department_for(self.labels[j])) for j in order]
        reasons = []
        if top[0].probability < cfg.needs_review_below:
            reasons.append("low_confidence")
        if hits and hits[0][1] < cfg.min_case_similarity:
            reasons.append("unlike_known_cases")
        if top[0].category not in cfg.routing:
            reasons.append("unrouted_category")
        return ReasonResponse(
            category=top[0].category, confidence=top[0].probability, department=top[0].department,
            needs_review=bool(reasons), review_reasons=reasons, top_categories=top,
            similar_cases=[self._similar(case, score) for case, score in hits[:cases_k]], truncated=truncated,
            inputs=inputs)

    def _similar(self, case: Case, score: float) -> SimilarCase:
        limit = self.config.reply_excerpt_chars
        reply = clean(case.reply)
        excerpt = (reply[:limit] + "…" if len(reply) > limit else reply) or None
        return SimilarCase(id=case.id, subject=case.subject, score=round(score, 4), category=case.category,
                           reply_excerpt=excerpt, source=case.source)

    # ---- run-time additions ---------------------------------------------------------------------
    def add_cases(self, request: AddCasesRequest) -> AddCasesResponse:
        """Embed resolved cases, journal them under the data dir, and add them to the index."""
        cases = [Case(id=c.id.strip(), subject=clean(c.subject) or clean(c.text)[:40], text=c.text,
                      reply=c.reply, category=c.category, source="added") for c in request.cases]
        if any(not c.id or not c.text.strip() for c in cases):
            raise InvalidInput("every case needs a non-empty id and text", field="cases")
        added, updated = self.library.add(cases, self.encoder.encode([c.text for c in cases]))
        return AddCasesResponse(added=added, updated=updated, total_cases=len(self.cases))
