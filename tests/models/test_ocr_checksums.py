"""GB 32100-2015 / GB 11643-1999 check characters, OCR-confusion repair, value cleaning, masking."""

from __future__ import annotations

import pytest

from models.ocr.checksums import (
    check_credit_code,
    check_id_number,
    credit_code_check_char,
    id_birth_date,
    id_check_char,
    id_sex,
    mask_id_number,
    redact,
)
from models.ocr.fields import clean, clean_code

# Published codes of real companies and the worked examples of the standards.
VALID_CREDIT_CODES = [
    "91350100M000100Y43",  # GB 32100-2015 worked example
    "91110000802100433B",
    "914403001922038216",
    "91440300708461136T",
    "91330100716105852F",
]


@pytest.mark.parametrize("code", VALID_CREDIT_CODES)
def test_valid_credit_codes(code):
    assert check_credit_code(code).status == "valid"
    assert credit_code_check_char(code[:17]) == code[17]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("91350100M000100Y44", "invalid_checksum"),  # last character changed
        ("91350100M000100Y4", "invalid_format"),  # 17 characters
        ("91350100M000100Y433", "invalid_format"),  # 19 characters
        ("91350100M0001O0Y43", "invalid_format"),  # O is not in the alphabet
        ("91350100MI00100Y43", "invalid_format"),  # nor I
        ("9135A100M000100Y43", "invalid_format"),  # region code must be digits
        ("91350100M000100Y34", "invalid_checksum"),  # two characters swapped
        ("91530100M000100Y43", "invalid_checksum"),
    ],
)
def test_invalid_credit_codes(code, status):
    assert check_credit_code(code).status == status


VALID_ID_NUMBERS = [
    "11010519491231002X",  # GB 11643-1999 worked examples
    "440524188001010014",
    "420704198705031236",
]


@pytest.mark.parametrize("number", VALID_ID_NUMBERS)
def test_valid_id_numbers(number):
    assert check_id_number(number).status == "valid"
    assert id_check_char(number[:17]) == number[17]


@pytest.mark.parametrize(
    ("number", "status"),
    [
        ("110105194912310021", "invalid_checksum"),  # X replaced by 1
        ("440524188001010015", "invalid_checksum"),
        ("440524188001010041", "invalid_checksum"),  # two digits swapped
        ("44052418800101001", "invalid_format"),  # 17 digits
        ("4405241880010100144", "invalid_format"),
        ("44052418800101001A", "invalid_format"),
        ("440524188013010011", "invalid_format"),  # month 13
        ("440524190002290013", "invalid_format"),  # 1900 was not a leap year
    ],
)
def test_invalid_id_numbers(number, status):
    assert check_id_number(number).status == status


@pytest.mark.parametrize(
    ("number", "birth", "sex"),
    [("11010519491231002X", "1949-12-31", "女"), ("440524188001010014", "1880-01-01", "男")],
)
def test_birth_date_and_sex_from_id_number(number, birth, sex):
    assert id_birth_date(number).isoformat() == birth
    assert id_sex(number) == sex


@pytest.mark.parametrize(
    ("kind", "read", "value", "status"),
    [
        ("credit_code", "91350100MOOO100Y43", "91350100M000100Y43", "valid"),  # O is not in the alphabet
        ("credit_code", "9135O1OOM000100Y43", "91350100M000100Y43", "valid"),  # region digits
        ("credit_code", "统一社会信用代码91110000802100433B", "91110000802100433B", "valid"),
        ("credit_code", "91350100M000100Y44", "91350100M000100Y44", "invalid_checksum"),
        ("id_number", "44052418800101OO14", "440524188001010014", "valid"),
        ("id_number", "11010519491231002x", "11010519491231002X", "valid"),
        ("id_number", "公民身份号码 4405241880O1010014", "440524188001010014", "valid"),
        ("id_number", "440524188001010015", "440524188001010015", "invalid_checksum"),
    ],
)
def test_code_repair_never_hides_a_bad_checksum(kind, read, value, status):
    assert clean_code(kind, read) == (value, status)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("date", "1987 年 5 月 3 日", ("1987-05-03", "valid")),
        ("date", "2015年03月12日", ("2015-03-12", "valid")),
        ("date", "2O15年O3月12日", ("2015-03-12", "valid")),
        ("date", "2015年13月12日", ("2015年13月12日", "invalid_format")),
        ("period", "2016.05.10-2036.05.10", ("2016-05-10至2036-05-10", "valid")),
        ("period", "2016.05.10-长期", ("2016-05-10至长期", "valid")),
        ("period", "2015年03月12日至长期", ("2015-03-12至长期", "valid")),
        ("period", "2015年03月12日至2035年03月11日", ("2015-03-12至2035-03-11", "valid")),
        ("period", "至长", ("至长", "invalid_format")),
        ("sex", "男", ("男", "valid")),
        ("sex", "勇", ("勇", "invalid_format")),
        ("ethnicity", "汉", ("汉", "valid")),
        ("ethnicity", "土家族", ("土家", "valid")),
        ("ethnicity", "汊", ("汊", "invalid_format")),
        ("person_name", "张三", ("张三", "valid")),
        ("person_name", "张3", ("张3", "invalid_format")),
        ("text", "", (None, "missing")),
    ],
)
def test_clean_values(kind, text, expected):
    assert clean(kind, text) == expected


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("420700198705031234", "420700********1234"),
        ("号码 11010519491231002X 已核验", "号码 110105********002X 已核验"),
        ("no number here 12345", "no number here 12345"),
        ("91350100M000100Y43", "91350100M000100Y43"),  # a credit code is not personal data
    ],
)
def test_id_numbers_are_masked(text, masked):
    assert redact(text) == masked
    if len(text) == 18 and text.isdigit():
        assert mask_id_number(text) == masked
