"""Synthetic certificates for the `read` capability: 营业执照 (business licence) and 居民身份证 (ID
card, front and back), rendered with a CJK font and photographed badly, with every true field
value known so that field accuracy can be measured. Deterministic for a seed.

    python -m training.ocr_synth --out /tmp/synth --count 3      # look at a few

>>> docs = generate("business_licence", count=2, seed=7)
>>> docs[0].fields["credit_code"], docs[0].image[:2]
('91420704MA4...', b'\\xff\\xd8')
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

import numpy as np

from models.ocr.page import normalize
from training.ocr_synth.render import font_path, photograph, render_id_back, render_id_front, render_licence
from training.ocr_synth.values import credit_code, id_number, id_values, licence_values

__all__ = [
    "SyntheticDoc",
    "credit_code",
    "font_path",
    "generate",
    "id_number",
    "id_values",
    "licence_values",
    "photograph",
    "render_id_back",
    "render_id_front",
    "render_licence",
    "truth",
]


@dataclass(frozen=True)
class SyntheticDoc:
    """One rendered and degraded image with its true fields (normalised as the reader reports them)."""

    document_type: str
    side: str | None
    image: bytes  # JPEG
    fields: dict[str, str] = field(default_factory=dict)


def _iso(printed: str) -> str:
    nums = [
        int("".join(c for c in part if c.isdigit()))
        for part in printed.replace("年", " ").replace("月", " ").replace("日", " ").replace(".", " ").split()
        if any(c.isdigit() for c in part)
    ]
    return dt.date(*nums[:3]).isoformat()


def _period_truth(printed: str) -> str:
    sep = "至" if "至" in printed else "-"
    start, end = (p.strip() for p in printed.split(sep, 1))
    return f"{_iso(start)}至{'长期' if '长期' in end else _iso(end)}"


def truth(document_type: str, side: str | None, printed: dict[str, str]) -> dict[str, str]:
    """Printed strings -> the normalised values the reader reports (ISO dates, NFKC, no spaces)."""
    keys = {
        ("business_licence", None): tuple(printed),
        ("id_card", "front"): ("name", "sex", "ethnicity", "birth_date", "address", "id_number"),
        ("id_card", "back"): ("issuing_authority", "valid_period"),
    }[(document_type, side)]
    out = {}
    for key in keys:
        value = printed[key]
        if key in ("established_date", "registration_date", "birth_date"):
            out[key] = _iso(value)
        elif key in ("business_term", "valid_period"):
            out[key] = _period_truth(value)
        else:
            out[key] = normalize(value)
    return out


def generate(document_type: str, count: int, seed: int = 0) -> list[SyntheticDoc]:
    """`count` licences, or `count` ID cards as front and back images (2 * count docs)."""
    docs = []
    for i in range(count):
        rng = random.Random(seed * 100_003 + i)
        nprng = np.random.default_rng(seed * 100_003 + i)
        if document_type == "business_licence":
            printed = licence_values(rng)
            image = photograph(render_licence(printed, rng, nprng), rng, nprng)
            docs.append(SyntheticDoc(document_type, None, image, truth(document_type, None, printed)))
        elif document_type == "id_card":
            printed = id_values(rng)
            for side, render in (("front", render_id_front), ("back", render_id_back)):
                image = photograph(render(printed, rng, nprng), rng, nprng)
                docs.append(SyntheticDoc(document_type, side, image, truth(document_type, side, printed)))
        else:
            raise ValueError(f"unknown document type {document_type!r}")
    return docs
