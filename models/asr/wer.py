"""Word and character error rates: Levenshtein distance over tokens, divided by the reference length.

>>> word_error_rate("It was the first great sorrow", "it was the first grey sorrow")
0.16666666666666666
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCT = re.compile(r"[^\w\s']+", re.UNICODE)


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation: ASR scoring compares words, not casing or commas."""
    text = _PUNCT.sub(" ", text.lower().replace("-", " "))
    return [w.strip("'") for w in text.split() if w.strip("'")]


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions to turn `reference` into `hypothesis` (one DP row)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_token in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_token in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_token != hyp_token),  # substitution or match
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER = word edits / reference words; an empty reference scores 0 only against an empty hypothesis."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def character_error_rate(reference: str, hypothesis: str) -> float:
    """CER over non-space, non-punctuation characters: the usual score for Chinese transcripts."""
    ref = [c for c in _PUNCT.sub("", reference.lower()) if not c.isspace()]
    hyp = [c for c in _PUNCT.sub("", hypothesis.lower()) if not c.isspace()]
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
