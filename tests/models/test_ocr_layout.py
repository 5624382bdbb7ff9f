"""Layout rules of field extraction on hand-placed OCR lines (no model): two columns, labels split
or merged or half lost, wrapped values, gutters, skewed pages, cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.ocr.documents import detect_type, extract
from models.ocr.engine import OcrLine
from models.ocr.page import Page

H = 30  # glyph height in pixels


def _line(text: str, x: float, y: float, score: float = 0.99, angle_deg: float = 0.0) -> OcrLine:
    width = sum(0.55 if ord(c) < 0x2E80 else 1.0 for c in text) * H
    box = np.array([[x, y], [x + width, y], [x + width, y + H], [x, y + H]], dtype=np.float64)
    if angle_deg:
        a = math.radians(angle_deg)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        box = (box - 700) @ rot.T + 700
    return OcrLine(text, score, box.astype(np.float32), tuple([score] * len(text)))


def _page(rows: list[tuple], angle_deg: float = 0.0) -> Page:
    return Page.from_lines([_line(*row[:3], *row[3:], angle_deg=angle_deg) for row in rows])


TWO_COLUMNS = [
    ("营业执照", 600, 40),
    ("统一社会信用代码", 100, 90),
    ("91350100M000100Y43", 100, 130),
    ("名", 100, 200), ("称", 220, 200), ("鄂州市恒泰科技有限公司", 300, 200),
    ("注册资本", 800, 200), ("壹佰万元整", 990, 200),
    ("类型有限责任公司（自然人独资）", 100, 264),
    ("成立日期", 800, 264), ("2015年03月12日", 990, 264),
    ("法定代表人", 100, 328), ("王伟", 300, 328), ("营业期限", 800, 328), ("2015年03月12日至长期", 990, 328),
    ("经营范围", 100, 392), ("技术开发；技术咨询；计算机", 300, 392),
    ("所", 920, 392), ("湖北省鄂州市鄂城区滨湖南路", 990, 392),
    ("软硬件销售。", 300, 434), ("18号", 990, 434),
    ("登记机关", 930, 560), ("鄂州市市场监督管理局", 1080, 560),
    ("2020年05月12日", 1080, 620),
]
LICENCE_TRUTH = {
    "credit_code": ("91350100M000100Y43", "valid"),
    "name": ("鄂州市恒泰科技有限公司", "valid"),
    "type": ("有限责任公司(自然人独资)", "valid"),
    "legal_representative": ("王伟", "valid"),
    "business_scope": ("技术开发;技术咨询;计算机软硬件销售。", "valid"),
    "registered_capital": ("壹佰万元整", "valid"),
    "established_date": ("2015-03-12", "valid"),
    "business_term": ("2015-03-12至长期", "valid"),
    "address": ("湖北省鄂州市鄂城区滨湖南路18号", "valid"),
    "registration_authority": ("鄂州市市场监督管理局", "valid"),
    "registration_date": ("2020-05-12", "valid"),
}


@pytest.mark.parametrize("angle_deg", [0.0, 8.0, -10.0])
def test_two_column_licence_on_a_skewed_page(angle_deg):
    page = _page(TWO_COLUMNS, angle_deg)
    assert detect_type(page) == "business_licence"
    fields = extract(page, "business_licence")
    assert {k: (f.value, f.status) for k, f in fields.items()} == LICENCE_TRUTH


@pytest.mark.parametrize(
    ("doc_type", "rows", "key", "value", "status"),
    [
        # The whole label lost: the value above 类型 is the name, flagged for a human to look at.
        ("business_licence", [("鄂州市恒泰科技有限公司", 300, 200), ("类型", 100, 264), ("其他有限责任公司", 300, 264)],
         "name", "鄂州市恒泰科技有限公司", "low_confidence"),
        # A stray character after the label inside its box is not part of the value.
        ("id_card", [("姓名日", 60, 60), ("白峰怡", 160, 60), ("性别男", 60, 125), ("民族土家", 290, 125)],
         "name", "白峰怡", "valid"),
        ("id_card", [("姓名", 60, 60), ("白峰怡", 160, 60), ("性别男", 60, 125), ("民族土家", 290, 125)],
         "ethnicity", "土家", "valid"),
        # A value does not run on across a gutter into a caption.
        ("business_licence", [("注册资本", 800, 200), ("壹佰万元整", 990, 200), ("许可、监管信息", 1300, 200), ("类型", 100, 264)],
         "registered_capital", "壹佰万元整", "valid"),
        # Unsure characters make the field low-confidence rather than valid.
        ("business_licence", [("名称", 100, 200), ("鄂州市恒泰科技有限公司", 300, 200, 0.6), ("类型", 100, 264)],
         "name", "鄂州市恒泰科技有限公司", "low_confidence"),
        # Nothing readable after a label: missing, with no value.
        ("business_licence", [("名称", 100, 200), ("类型", 100, 264), ("其他有限责任公司", 300, 264), ("住所", 100, 328)],
         "name", None, "missing"),
    ],
)
def test_layout_rules(doc_type, rows, key, value, status):
    field = extract(_page(rows), doc_type)[key]
    assert (field.value, field.status) == (value, status)
    assert (field.box is None) == (value is None)


ID_FRONT = [
    ("姓名", 60, 60), ("张三", 160, 60),
    ("性别", 60, 125), ("男", 160, 125), ("民族", 290, 125), ("汉", 390, 125),
    ("出生", 60, 190), ("1987年5月3日", 160, 190),
    ("住址", 60, 255), ("湖北省鄂州市鄂城区滨湖南", 160, 255), ("路18号", 160, 297),
    ("公民身份号码", 60, 440), ("420704198705031236", 300, 440),
]


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({}, {"birth_date": "valid", "sex": "valid", "id_number": "valid"}),
        ({"1987年5月3日": "1988年5月3日"}, {"birth_date": "inconsistent", "id_number": "inconsistent"}),
        ({"男": "女"}, {"sex": "inconsistent", "id_number": "inconsistent"}),
        ({"420704198705031236": "420704198705031237"}, {"id_number": "invalid_checksum", "birth_date": "valid"}),
        ({"420704198705031236": "42O7O4198705031236"}, {"id_number": "valid"}),  # O read for 0
    ],
)
def test_id_card_front_is_cross_checked(replace, expected):
    page = _page([(replace.get(t, t), x, y) for t, x, y in ID_FRONT])
    assert detect_type(page) == "id_card"
    fields = extract(page, "id_card")
    assert set(fields) == {"name", "sex", "ethnicity", "birth_date", "address", "id_number"}  # front only
    assert fields["address"].value == "湖北省鄂州市鄂城区滨湖南路18号"
    assert {k: fields[k].status for k in expected} == expected


@pytest.mark.parametrize(
    ("texts", "doc_type"),
    [
        (["中华人民共和国", "居民身份证", "签发机关鄂州市公安局", "有效期限2016.05.10-2036.05.10"], "id_card"),
        (["登机牌", "BOARDING PASS", "姓名NAME", "ZHANGQIWEI"], None),  # one stray keyword is not enough
        (["营业执照", "名称", "某某公司"], "business_licence"),
        ([], None),
    ],
)
def test_document_type_needs_several_keywords(texts, doc_type):
    assert detect_type(_page([(t, 100, 60 * i) for i, t in enumerate(texts)])) == doc_type
