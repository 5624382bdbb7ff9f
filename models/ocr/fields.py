"""Typed field values: cleaning of OCR text per kind (dates, periods, codes, sex, ethnicity) and
the validation status a caller sees.

Statuses: "valid"; "low_confidence" (read, plausible, but the recogniser was unsure: check it);
"invalid_format" (does not look like this kind of value); "invalid_checksum" (a code whose check
character does not match); "inconsistent" (disagrees with another field, e.g. birth date vs ID
number); "missing" (label or value not found: no value is invented).

>>> clean("date", "1987 年 5 月 3 日")
('1987-05-03', 'valid')
>>> clean("credit_code", "91350100MOOO100Y43")      # O read for 0 is repaired: O is not in the alphabet
('91350100M000100Y43', 'valid')
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np

from models.ocr.checksums import CREDIT_CODE_ALPHABET, check_credit_code, check_id_number

LOW_CONFIDENCE = 0.80  # least character confidence in a value below which it is flagged (see bench)

_ETHNIC_NAMES = (
    "汉 蒙古 回 藏 维吾尔 苗 彝 壮 布依 朝鲜 满 侗 瑶 白 土家 哈尼 哈萨克 傣 黎 傈僳 佤 畲 高山 拉祜 水 东乡 纳西 "
    "景颇 柯尔克孜 土 达斡尔 仫佬 羌 布朗 撒拉 毛南 仡佬 锡伯 阿昌 普米 塔吉克 怒 乌孜别克 俄罗斯 鄂温克 德昂 保安 "
    "裕固 京 塔塔尔 独龙 鄂伦春 赫哲 门巴 珞巴 基诺"
)
ETHNIC_GROUPS = frozenset(_ETHNIC_NAMES.split(" "))

# Letters the recogniser confuses with digits; applied only where the alphabet rules them out.
_TO_DIGIT = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "i": "1", "|": "1",
                           "Z": "2", "z": "2", "S": "5", "s": "5", "B": "8", "G": "6", "b": "6", "g": "9"})
_TO_CREDIT = str.maketrans({"O": "0", "I": "1", "S": "5", "Z": "2", "V": "U"})


@dataclass(frozen=True)
class FieldResult:
    """One extracted field: `box` (4, 2) in image pixels or None when missing."""

    key: str
    label: str
    value: str | None
    score: float
    box: np.ndarray | None
    status: str


def _digits(text: str) -> str:
    return text.translate(_TO_DIGIT)


_DATE = re.compile(r"(\d{4})\D{0,3}?(\d{1,2})\D{0,3}?(\d{1,2})")


def parse_date(text: str) -> dt.date | None:
    m = _DATE.search(_digits(text))
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _period(text: str) -> str | None:
    """"2015年03月12日至长期" / "2016.05.10-2036.05.10" -> "2015-03-12至长期" / "2016-05-10至2036-05-10"."""
    fixed = _digits(text)
    dates = [m for m in _DATE.finditer(fixed)]
    if not dates:
        return "长期" if "长期" in text else None
    start = parse_date(dates[0].group(0))
    if start is None:
        return None
    rest = fixed[dates[0].end():]
    if len(dates) > 1:
        end = parse_date(dates[1].group(0))
        return f"{start.isoformat()}至{end.isoformat()}" if end else None
    if "长期" in rest or "长" in rest:
        return f"{start.isoformat()}至长期"
    return None


def _repair_credit(window: str) -> str:
    window = window.translate(_TO_CREDIT)
    return window[:2] + _digits(window[2:8]) + window[8:]  # positions 3-8: region code, digits only


def _repair_id(window: str) -> str:
    return _digits(window[:17]) + (window[17] if window[17:] == "X" else _digits(window[17:]))


def clean_code(kind: str, text: str) -> tuple[str, str]:
    """The first 18-character window of `text` that is a valid code after repairing look-alike
    letters the alphabet rules out; else the repaired text and why it is not valid."""
    repair, check = (_repair_credit, check_credit_code) if kind == "credit_code" else (_repair_id, check_id_number)
    raw = "".join(c for c in text.upper() if c.isascii() and c.isalnum())
    for start in range(0, max(len(raw) - 17, 1)):
        window = repair(raw[start : start + 18])
        if check(window).ok:
            return window, "valid"
    value = repair(raw[:18]) if len(raw) >= 18 else raw
    if kind == "credit_code" and any(c not in CREDIT_CODE_ALPHABET for c in value):
        return value, "invalid_format"
    return value, check(value).status


def clean(kind: str, text: str) -> tuple[str | None, str]:
    """(value, status) for raw text of a kind; status is "valid" or a reason it is not."""
    text = text.strip(":;,.·-_|")
    if not text:
        return None, "missing"
    if kind in ("credit_code", "id_number"):
        return clean_code(kind, text)
    if kind == "date":
        date = parse_date(text)
        return (date.isoformat(), "valid") if date else (text, "invalid_format")
    if kind == "period":
        period = _period(text)
        return (period, "valid") if period else (text, "invalid_format")
    if kind == "sex":
        found = [c for c in text if c in "男女"]
        return (found[0], "valid") if len(found) == 1 else (text, "invalid_format")
    if kind == "ethnicity":
        value = text.removesuffix("族")
        return (value, "valid") if value in ETHNIC_GROUPS else (value, "invalid_format")
    if kind == "person_name":
        ok = 2 <= len(text) <= 6 and all("\u4e00" <= c <= "\u9fff" or c == "·" for c in text)
        return text, "valid" if ok else "invalid_format"
    return text, "valid"


def finish(key: str, label: str, kind: str, text: str, score: float, box: np.ndarray | None) -> FieldResult:
    """Clean a read value and give it its status (low confidence only where nothing else is wrong;
    a code whose check character matches is trusted over the recogniser's confidence)."""
    value, status = clean(kind, text)
    if value is None:
        return FieldResult(key, label, None, 0.0, None, "missing")
    if status == "valid" and score < LOW_CONFIDENCE and kind not in ("credit_code", "id_number"):
        status = "low_confidence"
    return FieldResult(key, label, value, round(float(score), 4), box, status)


def missing(key: str, label: str) -> FieldResult:
    return FieldResult(key, label, None, 0.0, None, "missing")
