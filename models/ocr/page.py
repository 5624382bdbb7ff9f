"""OCR lines as a page: text normalised (NFKC, no spaces) with per-character confidences, boxes
deskewed, and lines grouped into rows; spans of characters map back to oriented image boxes.

>>> page = Page.from_lines(lines)                  # lines: list[OcrLine] from the engine
>>> page.row_text[0], page.rows[0][0].x0
>>> page.span(0, 2, 6).box                         # (4, 2) in image pixels
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.ocr.engine import OcrLine
from models.ocr.geometry import rotate_points, skew_deg


def normalize(text: str) -> str:
    """NFKC (full-width letters, digits and punctuation to ASCII) and no whitespace."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _normalize_scored(text: str, score: float, char_scores: Sequence[float]) -> tuple[str, tuple[float, ...]]:
    """`normalize` character by character, carrying each character's recognition confidence."""
    scores = char_scores if len(char_scores) == len(text) else [score] * len(text)
    chars, out = [], []
    for ch, sc in zip(text, scores, strict=True):
        for c in unicodedata.normalize("NFKC", ch):
            if not c.isspace():
                chars.append(c)
                out.append(float(sc))
    return "".join(chars), tuple(out)


def _char_weight(ch: str) -> float:
    return 0.55 if ord(ch) < 0x2E80 else 1.0  # ASCII/Latin glyphs are about half a CJK cell


@dataclass(frozen=True)
class Token:
    """One OCR line in the deskewed frame: axis-aligned box `x0..x1`, `y0..y1`."""

    index: int
    text: str
    score: float
    x0: float
    y0: float
    x1: float
    y1: float
    char_scores: tuple[float, ...] = ()

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def char_x(self, i: int) -> float:
        """x of the left edge of character i (by glyph width weights)."""
        weights = [_char_weight(c) for c in self.text]
        total = sum(weights) or 1.0
        return self.x0 + (self.x1 - self.x0) * sum(weights[:i]) / total


@dataclass(frozen=True)
class Span:
    """A piece of text read from the page: which characters of which tokens, its score and box."""

    text: str
    score: float
    box: np.ndarray | None  # (4, 2) in image pixels
    tokens: tuple[int, ...] = ()


class Page:
    """OCR lines arranged in rows of the deskewed page."""

    def __init__(self, tokens: list[Token], angle_deg: float, center: tuple[float, float]) -> None:
        self.angle_deg, self.center = angle_deg, center
        self.rows: list[list[Token]] = _rows(tokens)
        self.row_text = ["".join(t.text for t in row) for row in self.rows]
        heights = [t.height for t in tokens]
        self.line_height = float(np.median(heights)) if heights else 1.0

    @classmethod
    def from_lines(cls, lines: Sequence[OcrLine]) -> Page:
        boxes = np.array([ln.box for ln in lines], dtype=np.float64).reshape(-1, 4, 2)
        angle = skew_deg(boxes)
        center = tuple(boxes.reshape(-1, 2).mean(axis=0)) if len(boxes) else (0.0, 0.0)
        flat = rotate_points(boxes, angle, center)
        tokens = []
        for i, ln in enumerate(lines):
            text, scores = _normalize_scored(ln.text, ln.score, ln.char_scores)
            x, y = flat[i, :, 0], flat[i, :, 1]
            tokens.append(
                Token(i, text, ln.score, float(x.min()), float(y.min()), float(x.max()), float(y.max()), scores)
            )
        return cls(_split_vertical([t for t in tokens if t.text]), angle, center)

    def full_text(self) -> str:
        return "".join(self.row_text)

    def locate(self, row: int, pos: int) -> tuple[Token, int]:
        """The token and character index of position `pos` in `row_text[row]`."""
        for token in self.rows[row]:
            if pos < len(token.text):
                return token, pos
            pos -= len(token.text)
        raise IndexError(pos)

    def span(self, row: int, start: int, end: int) -> Span:
        """Characters [start, end) of a row as a Span (box = the deskewed extent, rotated back)."""
        pieces, offset = [], 0
        for token in self.rows[row]:
            lo, hi = max(start - offset, 0), min(end - offset, len(token.text))
            if lo < hi:
                pieces.append((token, lo, hi))
            offset += len(token.text)
        return self._join([(t, lo, hi) for t, lo, hi in pieces])

    def token_span(self, tokens: Sequence[Token]) -> Span:
        return self._join([(t, 0, len(t.text)) for t in tokens])

    def _join(self, pieces: Sequence[tuple[Token, int, int]]) -> Span:
        if not pieces:
            return Span("", 0.0, None)
        text = "".join(t.text[lo:hi] for t, lo, hi in pieces)
        x0 = min(t.char_x(lo) for t, lo, _ in pieces)
        x1 = max(t.char_x(hi) for t, _, hi in pieces)
        y0, y1 = min(t.y0 for t, _, _ in pieces), max(t.y1 for t, _, _ in pieces)
        flat = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        box = rotate_points(flat, -self.angle_deg, self.center)
        # A value is as sure as its least sure character: one misread character makes it wrong.
        score = min(min(t.char_scores[lo:hi]) if t.char_scores else t.score for t, lo, hi in pieces)
        return Span(text, score, box, tuple(dict.fromkeys(t.index for t, _, _ in pieces)))


def _split_vertical(tokens: list[Token]) -> list[Token]:
    """On a page of horizontal lines, a tall box over several rows is characters of different
    rows merged by the detector (spread-out labels like "名  称" above "类  型"): give each
    character its own slice of the box so that each joins its row."""
    flat = [t.height for t in tokens if t.x1 - t.x0 >= t.height]
    if len(flat) <= len(tokens) / 2:
        return tokens  # a page of vertical text: leave its columns alone
    typical = float(np.median(flat))
    out = []
    for t in tokens:
        if len(t.text) >= 2 and t.height > 1.5 * (t.x1 - t.x0) and t.height > 1.8 * typical:
            step = t.height / len(t.text)
            out += [
                Token(t.index, ch, t.score, t.x0, t.y0 + k * step, t.x1, t.y0 + (k + 1) * step, t.char_scores[k : k + 1])
                for k, ch in enumerate(t.text)
            ]
        else:
            out.append(t)
    return out


def _rows(tokens: list[Token]) -> list[list[Token]]:
    """Tokens whose vertical extents overlap by half the smaller height share a row."""
    rows: list[list[Token]] = []
    for token in sorted(tokens, key=lambda t: (t.y0 + t.y1) / 2):
        for row in reversed(rows[-3:]):  # a row may be interrupted by a taller neighbour
            top, bottom = min(t.y0 for t in row), max(t.y1 for t in row)
            mid = np.median([(t.y0 + t.y1) / 2 for t in row])
            overlap = min(bottom, token.y1) - max(top, token.y0)
            if overlap >= 0.5 * min(token.height, bottom - top) and abs((token.y0 + token.y1) / 2 - mid) < 0.6 * max(
                token.height, 1.0
            ):
                row.append(token)
                break
        else:
            rows.append([token])
    rows = [sorted(r, key=lambda t: t.x0) for r in rows]
    return sorted(rows, key=lambda r: min(t.y0 for t in r))
