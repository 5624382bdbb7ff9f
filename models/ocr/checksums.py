"""Check characters of Chinese registration numbers, and masking of ID numbers for logs.

- GB 32100-2015 统一社会信用代码 (unified social credit code): 18 characters from a 31-letter
  alphabet without I, O, S, V, Z; the last is a mod-31 check character.
- GB 11643-1999 公民身份号码 (citizen ID number): 17 digits + a mod-11 check character (0-9 or X);
  digits 7-14 are the birth date, digit 17 is odd for men and even for women.

>>> credit_code_check_char("91350100M000100Y4")
'3'
>>> id_check_char("11010519491231002")
'X'
>>> mask_id_number("420700198705031234")
'420700********1234'
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

# GB 32100-2015, table 1: code characters and their values (I, O, S, V, Z are not used).
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_ALPHABET)}
_CREDIT_SHAPE = re.compile(rf"^[{CREDIT_CODE_ALPHABET}]{{2}}\d{{6}}[{CREDIT_CODE_ALPHABET}]{{10}}$")

# GB 11714-1997 organisation code inside positions 9-17 of a credit code.
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# GB 11643-1999: weights 2^(17-i) mod 11 and the check character for sum mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")


def credit_code_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a credit code."""
    if len(first17) != 17 or any(c not in _CREDIT_VALUE for c in first17):
        raise ValueError(f"not 17 credit-code characters: {first17!r}")
    total = sum(_CREDIT_VALUE[c] * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    """The GB 11714-1997 check character of an 8-character organisation code (used by the generator)."""
    total = sum(_ORG_ALPHABET.index(c) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"not 17 digits: {first17!r}")
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


@dataclass(frozen=True)
class CodeCheck:
    """Outcome of validating a code: `status` is "valid", "invalid_format" or "invalid_checksum"."""

    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def check_credit_code(code: str) -> CodeCheck:
    if len(code) != 18:
        return CodeCheck("invalid_format", f"{len(code)} characters, expected 18")
    if not _CREDIT_SHAPE.match(code):
        return CodeCheck("invalid_format", "characters outside GB 32100 alphabet or non-digit region code")
    if credit_code_check_char(code[:17]) != code[17]:
        return CodeCheck("invalid_checksum", "GB 32100-2015 check character does not match")
    return CodeCheck("valid")


def check_id_number(number: str) -> CodeCheck:
    if len(number) != 18:
        return CodeCheck("invalid_format", f"{len(number)} characters, expected 18")
    if not _ID_SHAPE.match(number):
        return CodeCheck("invalid_format", "expected 17 digits and a digit or X")
    if id_birth_date(number) is None:
        return CodeCheck("invalid_format", "digits 7-14 are not a calendar date")
    if id_check_char(number[:17]) != number[17]:
        return CodeCheck("invalid_checksum", "GB 11643-1999 check digit does not match")
    return CodeCheck("valid")


def id_birth_date(number: str) -> dt.date | None:
    try:
        return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_sex(number: str) -> str:
    """"男" when digit 17 (the sequence code's last digit) is odd, else "女"."""
    return "男" if int(number[16]) % 2 else "女"


_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")


def mask_id_number(number: str) -> str:
    """Keep the region code and the last four characters: `420700********1234`."""
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def redact(text: str) -> str:
    """Mask every 18-character ID number inside free text before it is logged."""
    return _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)), text)
