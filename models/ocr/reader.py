"""The `read` capability: OCR lines of an image in reading order and, for a recognised
certificate, its fields with value, score, box and validation status.

>>> reader = OcrReader(); reader.load(artifact_dir, "cpu")
>>> [resp] = reader.predict_batch([ReadRequest(image=jpeg_bytes, document_type="id_card")])
>>> resp.fields["id_number"].status
'valid'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import cv2
import numpy as np

from hub.contract import Blob, Response, WireModel, prepare_each
from hub.errors import HubError
from hub.media import PixelBudget, decode_image, encode_jpeg
from models.ocr.checksums import redact
from models.ocr.documents import detect_type, extract
from models.ocr.engine import EngineConfig, OcrLine, PpOcrEngine
from models.ocr.fields import FieldResult
from models.ocr.page import Page

log = logging.getLogger(__name__)

DocumentType = Literal["business_licence", "id_card"]
FieldStatus = Literal["valid", "low_confidence", "invalid_format", "invalid_checksum", "inconsistent", "missing"]
Quad = list[list[float]]  # 4 points [x, y], clockwise from top-left, image pixels


class ReadRequest(WireModel):
    """An image (JPEG/PNG/BMP/WebP) and, optionally, the certificate it shows (else auto-detected)."""

    image: Blob
    document_type: DocumentType | None = None


class TextLine(WireModel):
    text: str
    score: float
    box: Quad


class FieldValue(WireModel):
    """One field: `value` is None when `status` is "missing" (nothing is invented)."""

    label: str
    value: str | None
    score: float
    box: Quad | None
    status: FieldStatus


class ReadResponse(Response):
    lines: list[TextLine]
    document_type: DocumentType | None
    fields: dict[str, FieldValue]


def _quad(box: np.ndarray | None) -> Quad | None:
    return None if box is None else [[round(float(x), 1), round(float(y), 1)] for x, y in box]


def _field(result: FieldResult) -> FieldValue:
    return FieldValue(
        label=result.label, value=result.value, score=result.score, box=_quad(result.box), status=result.status
    )


class OcrReader:
    """PP-OCR lines + certificate fields; recognition is batched across all requests of a batch.

    Example::

        reader = OcrReader()
        reader.load(Path("~/.hub/artifacts/ppocr-v4"), "cpu")
        resp = reader.predict_batch([ReadRequest(image=open("licence.jpg", "rb").read())])[0]
        print(resp.document_type, resp.fields["credit_code"].value)
    """

    name: ClassVar[str] = "read"
    request_type: ClassVar[type] = ReadRequest
    response_type: ClassVar[type] = ReadResponse
    upload_field: ClassVar[str] = "image"

    def __init__(self) -> None:
        self._engine: PpOcrEngine | None = None
        self.batched = True  # False: one model call per image and per line (the benchmark's baseline)

    def load(self, artifact_dir: Path, device: str) -> None:
        self._engine = PpOcrEngine(EngineConfig.from_artifact(Path(artifact_dir)), device=device)

    @property
    def engine(self) -> PpOcrEngine:
        if self._engine is None:
            raise HubError("OcrReader.load() was not called")
        return self._engine

    def sample_request(self) -> ReadRequest:
        # Drawn with OpenCV's built-in stroke font: no font file is needed to warm a replica up.
        canvas = np.full((96, 360, 3), 255, np.uint8)
        cv2.putText(canvas, "HUB 2024", (16, 64), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3, cv2.LINE_AA)
        return ReadRequest(image=encode_jpeg(canvas, quality=95))

    def predict_batch(self, requests: Sequence[ReadRequest]) -> list[ReadResponse | HubError]:
        started = time.perf_counter()
        budget = PixelBudget()  # the decoded pixels of one batch are capped, not only each image's
        # a corrupt or oversized image fails only its own request
        batch = prepare_each(requests, lambda request: decode_image(request.image, budget=budget))
        images, out = batch.items, batch.out
        # Images are decoded and read here and dropped with this frame: nothing is kept.
        pages = self.engine.read(images, batched=self.batched)
        for i, lines in zip(batch.slots, pages, strict=True):
            out[i] = self._respond(lines, requests[i].document_type)
        log.info(
            "read %d image(s), %d line(s), types %s in %.0f ms",
            len(images),
            sum(len(p) for p in pages),
            [r.document_type for r in out if isinstance(r, ReadResponse)],
            1000 * (time.perf_counter() - started),
        )
        return out

    def _respond(self, lines: list[OcrLine], requested: str | None) -> ReadResponse:
        page = Page.from_lines(lines)
        doc_type = requested or detect_type(page)
        fields = extract(page, doc_type) if doc_type else {}
        if log.isEnabledFor(logging.DEBUG):
            # Field values may be personal data: statuses only, and any ID number masked.
            log.debug("fields %s", {k: f.status for k, f in fields.items()})
            log.debug("lines %s", redact(" | ".join(ln.text for ln in lines)))
        return ReadResponse(
            lines=[TextLine(text=ln.text, score=round(ln.score, 4), box=_quad(ln.box)) for ln in lines],
            document_type=doc_type,
            fields={k: _field(f) for k, f in fields.items()},
        )
