"""Layout-aware key/value reading of a `Page`: printed labels, values beside or
below their label, and values that wrap onto following lines in the same column.

Labels are matched on the row's text with spaces removed, so a label split into boxes ("名" "称")
or merged with its value ("名称湖北某公司") reads the same. A value runs from the end of its
label to the next label of the row, which handles two-column layouts.

>>> page = Page.from_lines(lines)
>>> spans = read_labelled(page, [LabelSpec("name", ("名称",))])
>>> spans["name"].text, spans["name"].score, spans["name"].box
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.ocr.geometry import rotate_points
from models.ocr.page import Page, Span, Token


@dataclass(frozen=True)
class LabelSpec:
    """A printed key. `anywhere`: may start mid-box (short labels must start a box, so that a
    word inside a value is not taken for a label). `multiline`: the value may wrap. `below`: the
    value may be printed under the label rather than beside it."""

    key: str
    aliases: tuple[str, ...]
    anywhere: bool = False
    multiline: bool = False
    below: bool = True


@dataclass(frozen=True)
class _Match:
    spec: LabelSpec
    row: int
    start: int
    end: int
    fuzzy: bool
    lost_head: bool = False  # only the second half of a spread two-character label was read


def _find(text: str, alias: str, fuzzy: bool) -> list[tuple[int, bool]]:
    """Start positions of alias in text; with `fuzzy`, one wrong character is allowed (not the first)."""
    hits = []
    n = len(alias)
    for i in range(len(text) - n + 1):
        window = text[i : i + n]
        if window == alias:
            hits.append((i, False))
        elif fuzzy and window[0] == alias[0] and sum(a != b for a, b in zip(window, alias, strict=True)) == 1:
            hits.append((i, True))
    return hits


def _boundaries(page: Page, row: int) -> list[int]:
    """Offsets in the row text where a token starts (and the row's end)."""
    out, offset = [], 0
    for token in page.rows[row]:
        out.append(offset)
        offset += len(token.text)
    return [*out, offset]


def _gutter_starts(page: Page, row: int) -> list[tuple[int, bool]]:
    """Token start offsets of a row, each with whether a gutter (or the row's edge) precedes it."""
    out, offset, previous = [], 0, None
    for token in page.rows[row]:
        gap = previous is None or token.x0 - previous.x1 > 1.8 * page.line_height
        out.append((offset, gap))
        offset += len(token.text)
        previous = token
    return out


def _plausible_label(pos: int, end: int, bounds: list[int]) -> bool:
    """A short label starts a token, or is split across tokens and ends one ("…百货住" + "所")."""
    return pos in bounds or (end in bounds and any(pos < b < end for b in bounds))


def find_labels(page: Page, specs: Sequence[LabelSpec]) -> dict[str, _Match]:
    """The first plausible occurrence of each label; overlapping candidates: exact and long first."""
    candidates: list[_Match] = []
    for r, text in enumerate(page.row_text):
        bounds = _boundaries(page, r)
        for spec in specs:
            for alias in spec.aliases:
                for pos, fuzzy in _find(text, alias, fuzzy=len(alias) >= 4):
                    if spec.anywhere or len(alias) >= 4 or _plausible_label(pos, pos + len(alias), bounds):
                        candidates.append(_Match(spec, r, pos, pos + len(alias), fuzzy))
                if len(alias) == 2:
                    # A spread-out two-character label ("住    所") whose other half was lost:
                    # a lone character token that is half of it still marks where the label is.
                    for lo, hi in zip(bounds, bounds[1:], strict=False):
                        if hi - lo == 1 and text[lo] in alias and hi < len(text):
                            candidates.append(_Match(spec, r, lo, hi, True, text[lo] == alias[1]))
                    for lo, gap_before in _gutter_starts(page, r):  # "称鄂州市…" after a gutter
                        if text[lo] == alias[1] and len(text) > lo + 1 and gap_before:
                            candidates.append(_Match(spec, r, lo, lo + 1, True, True))
    candidates.sort(key=lambda m: (m.fuzzy, -(m.end - m.start), m.row, m.start))
    taken: dict[str, _Match] = {}
    used: dict[int, list[tuple[int, int]]] = {}
    for m in candidates:
        if m.spec.key in taken:
            continue
        if any(m.start < e and s < m.end for s, e in used.get(m.row, [])):
            continue
        taken[m.spec.key] = m
        used.setdefault(m.row, []).append((m.start, m.end))
    return taken


_LEADING = ":;,.·-_|"


def read_labelled(page: Page, specs: Sequence[LabelSpec]) -> dict[str, Span]:
    """Value span per found label (text may be empty when nothing readable follows the label)."""
    found = find_labels(page, specs)
    by_row: dict[int, list[_Match]] = {}
    for m in found.values():
        by_row.setdefault(m.row, []).append(m)
    for ms in by_row.values():
        ms.sort(key=lambda m: m.start)
    label_xs = [_x_at(page, o.row, o.start) for o in found.values() if not o.lost_head]
    out: dict[str, Span] = {}
    for key, m in found.items():
        text = page.row_text[m.row]
        nxt = next((o for o in by_row[m.row] if o.start > m.start), None)
        end = nxt.start if nxt else len(text)
        start = m.end
        while start < end and text[start] in _LEADING:
            start += 1
        start = _skip_stray_char(page, m.row, start, end)
        col_x0 = _x_at(page, m.row, m.start)
        if m.lost_head:  # the column starts where the lost first half was: the nearest label column
            left = [x for x in label_xs if col_x0 - 6 * page.line_height < x < col_x0 - 0.5 * page.line_height]
            col_x0 = max(left) if left else col_x0 - 3 * page.line_height
        col_x1 = _x_at(page, m.row, nxt.start) if nxt else np.inf
        value_row = m.row
        end = _cut_at_gutter(page, m.row, start, end)
        if start < end:
            parts = [page.span(m.row, start, end)]
            anchor_x = _x_at(page, m.row, start)
        elif m.spec.below and (below := _next_row_in_column(page, m.row, col_x0, col_x1, set(by_row))):
            value_row, toks = below
            parts = [page.token_span(toks)]
            anchor_x = toks[0].x0
        else:
            out[key] = Span("", 0.0, None)
            continue
        if m.spec.multiline:
            parts += _continuation(page, value_row, col_x0, col_x1, anchor_x, by_row)
        out[key] = _merge(parts)
    return out


def _span_x0(page: Page, span: Span) -> float:
    return float(rotate_points(span.box, page.angle_deg, page.center)[:, 0].min())


def value_above(page: Page, anchor: Span) -> Span | None:
    """The text directly above another field's value and aligned with it: where a certificate's
    fixed order puts a field whose label could not be read at all."""
    if anchor.box is None or not anchor.tokens:
        return None
    x0 = _span_x0(page, anchor)
    row = next(r for r, toks in enumerate(page.rows) if any(t.index in anchor.tokens for t in toks))
    top = min(t.y0 for t in page.rows[row] if t.index in anchor.tokens)
    for r in range(row - 1, max(row - 3, -1), -1):
        toks = [t for t in page.rows[r] if abs(t.x0 - x0) < 1.5 * page.line_height]
        if toks:
            if top - max(t.y1 for t in toks) >= 1.5 * page.line_height:
                return None
            run = [toks[0]]
            for token in page.rows[r][page.rows[r].index(toks[0]) + 1 :]:
                if token.x0 - run[-1].x1 > 1.8 * page.line_height:
                    break  # a gutter: the rest of the row is another column
                run.append(token)
            return page.token_span(run)
    return None


def _skip_stray_char(page: Page, row: int, start: int, end: int) -> int:
    """One character glued after a label inside the label's box, with the value in the next box
    ("姓名日" + "白峰怡"), is a recognition stray from the background: the value is the next box."""
    bounds = _boundaries(page, row)
    token_end = next((b for b in bounds if b > start), len(page.row_text[row]))
    if token_end - start == 1 and start not in bounds and token_end < end:
        return token_end
    return start


def _cut_at_gutter(page: Page, row: int, start: int, end: int) -> int:
    """End a value at a column gutter: a horizontal gap of several line heights between two
    of its tokens means the text beyond belongs to something else (a caption, another column)."""
    offset, previous = 0, None
    for token in page.rows[row]:
        lo, hi = offset, offset + len(token.text)
        if hi > start and lo < end:
            if previous is not None and token.x0 - previous.x1 > 1.8 * page.line_height and lo > start:
                return lo
            previous = token
        offset = hi
    return end


def _x_at(page: Page, row: int, pos: int) -> float:
    token, i = page.locate(row, pos)
    return token.char_x(i)


def _in_column(token: Token, x0: float, x1: float, tol: float) -> bool:
    return token.x0 >= x0 - tol and token.x0 < x1 - tol


def _next_row_in_column(
    page: Page, row: int, x0: float, x1: float, label_rows: set[int]
) -> tuple[int, list[Token]] | None:
    bottom = max(t.y1 for t in page.rows[row])
    for r in range(row + 1, len(page.rows)):
        toks = [t for t in page.rows[r] if _in_column(t, x0, x1, page.line_height)]
        if not toks:
            continue
        if min(t.y0 for t in toks) - bottom > 1.5 * page.line_height or r in label_rows:
            return None
        return r, toks
    return None


def _continuation(
    page: Page, row: int, col_x0: float, col_x1: float, anchor_x: float, by_row: dict[int, list[_Match]]
) -> list[Span]:
    """Lines below that continue a wrapped value: same column, left edge at the value's or the
    label's left edge, no paragraph-sized gap, until a label starts a new field in this column.
    A label further right belongs to a neighbouring column, which narrows this one."""
    parts: list[Span] = []
    tol = 1.5 * page.line_height
    own = [t for t in page.rows[row] if _in_column(t, col_x0, col_x1, page.line_height)]
    bottom = max(t.y1 for t in own or page.rows[row])
    for r in range(row + 1, len(page.rows)):
        for m in by_row.get(r, []):
            x = _x_at(page, r, m.start)
            if x > anchor_x + tol:
                col_x1 = min(col_x1, x)
            elif x >= col_x0 - tol:
                return parts
        toks = [t for t in page.rows[r] if _in_column(t, col_x0, col_x1, page.line_height)]
        if not toks:
            continue
        if min(t.y0 for t in toks) - bottom > 1.0 * page.line_height:
            break
        # Wrapped lines start under the value or under the label; the value's start inside a box
        # that also holds the label is estimated, hence the slack to its right.
        if not col_x0 - tol <= toks[0].x0 <= max(anchor_x, col_x0) + 3 * page.line_height:
            break
        parts.append(page.token_span(toks))
        bottom = max(t.y1 for t in toks)
    return parts


def _merge(parts: Sequence[Span]) -> Span:
    parts = [p for p in parts if p.text]
    if not parts:
        return Span("", 0.0, None)
    boxes = np.concatenate([p.box for p in parts])
    # The union of oriented boxes of one column: keep the first box's top edge direction.
    first = parts[0].box
    if len(parts) == 1:
        box = first
    else:
        direction = (first[1] - first[0]) / max(np.linalg.norm(first[1] - first[0]), 1e-6)
        normal = np.array([-direction[1], direction[0]])
        u, v = boxes @ direction, boxes @ normal
        box = np.array(
            [
                direction * u.min() + normal * v.min(),
                direction * u.max() + normal * v.min(),
                direction * u.max() + normal * v.max(),
                direction * u.min() + normal * v.max(),
            ]
        )
    return Span(
        "".join(p.text for p in parts),
        min(p.score for p in parts),
        box,
        tuple(dict.fromkeys(i for p in parts for i in p.tokens)),
    )
