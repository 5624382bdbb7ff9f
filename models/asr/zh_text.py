"""Mandarin transcript clean-up: Simplified characters and Chinese punctuation.

Whisper writes Mandarin in Traditional or Simplified characters as the training data happened to, puts
ASCII commas between Chinese clauses and spaces between words it took from a hotword prompt. A hotline
transcript is read (and classified) as plain Simplified Chinese, so every Mandarin segment goes through
`clean_mandarin`: OpenCC's Traditional -> Simplified table (opencc-python-reimplemented, Apache-2.0),
then full-width punctuation between Chinese characters and no spaces between them.

>>> clean_mandarin("廣州市 房地產, 中介協會分析.")
'广州市房地产，中介协会分析。'
"""

from __future__ import annotations

import re
import threading

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_FULL_WIDTH = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；", ".": "。"}
# A space with a Chinese character (or Chinese punctuation) on either side carries nothing.
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}，。？！：；、])\s+|\s+(?=[{_CJK}，。？！：；、])")
# ASCII punctuation right after a Chinese character (a decimal point between digits is left alone).
_ASCII_PUNCT_AFTER_CJK = re.compile(rf"(?<=[{_CJK}])\s*([,?!:;.])")
_REPEATED_PUNCT = re.compile(r"([，。？！：；、])[，。？！：；、]+")

_converter = None
_converter_lock = threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese (characters and common phrases, OpenCC `t2s`)."""
    global _converter
    with _converter_lock:  # the converter builds its dictionaries on first use
        if _converter is None:
            import opencc

            _converter = opencc.OpenCC("t2s")
        return _converter.convert(text)


def normalise_punctuation(text: str) -> str:
    """Full-width punctuation after Chinese characters, no spaces around them, no doubled marks."""
    text = _ASCII_PUNCT_AFTER_CJK.sub(lambda m: _FULL_WIDTH[m.group(1)], text)
    text = _SPACE_NEAR_CJK.sub("", text)
    return _REPEATED_PUNCT.sub(r"\1", text).strip()


def clean_mandarin(text: str) -> str:
    return normalise_punctuation(to_simplified(text))
