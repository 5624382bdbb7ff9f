"""Certificates the `read` capability knows: their printed labels, field kinds, how a page is
recognised as one of them, and cross-field checks.

>>> doc_type = detect_type(page)                 # "business_licence", "id_card" or None
>>> fields = extract(page, doc_type)             # key -> FieldResult
>>> fields["credit_code"].value, fields["credit_code"].status
('91350100M000100Y43', 'valid')
"""

from __future__ import annotations

from dataclasses import dataclass

from models.ocr.checksums import id_birth_date, id_sex
from models.ocr.fields import FieldResult, clean_code, finish, missing, parse_date
from models.ocr.layout import LabelSpec, read_labelled, value_above
from models.ocr.page import Page, Span

BUSINESS_LICENCE = "business_licence"
ID_CARD = "id_card"
DOCUMENT_TYPES = (BUSINESS_LICENCE, ID_CARD)


@dataclass(frozen=True)
class FieldSpec:
    """A field of a certificate: response key, printed label (+ variants), kind of value."""

    key: str
    label: str
    kind: str = "text"
    aliases: tuple[str, ...] = ()
    multiline: bool = False
    anywhere: bool = False
    above: str | None = None  # key of the field printed right below this one, in every layout

    def label_spec(self) -> LabelSpec:
        return LabelSpec(self.key, (self.label, *self.aliases), anywhere=self.anywhere, multiline=self.multiline)


LICENCE_FIELDS = (
    FieldSpec("credit_code", "统一社会信用代码", "credit_code", ("社会信用代码", "信用代码")),
    FieldSpec("name", "名称", aliases=("企业名称",), multiline=True, above="type"),
    FieldSpec("type", "类型", aliases=("组成形式",)),
    FieldSpec("legal_representative", "法定代表人", aliases=("负责人", "经营者", "执行事务合伙人", "投资人")),
    FieldSpec("business_scope", "经营范围", multiline=True),
    FieldSpec("registered_capital", "注册资本", aliases=("注册资金", "出资额", "出资数额")),
    FieldSpec("established_date", "成立日期", "date", ("注册日期",)),
    FieldSpec("business_term", "营业期限", "period", ("合伙期限", "经营期限"), multiline=True),
    FieldSpec("address", "住所", aliases=("主要经营场所", "经营场所", "营业场所"), multiline=True),
    FieldSpec("registration_authority", "登记机关"),
)
REGISTRATION_DATE = FieldSpec("registration_date", "登记日期", "date")

ID_FRONT_FIELDS = (
    FieldSpec("name", "姓名", "person_name"),
    FieldSpec("sex", "性别", "sex"),
    FieldSpec("ethnicity", "民族", "ethnicity", anywhere=True),
    FieldSpec("birth_date", "出生", "date", ("出生日期",)),
    FieldSpec("address", "住址", multiline=True),
    FieldSpec("id_number", "公民身份号码", "id_number", ("身份证号码", "身份号码", "公民身份证号码")),
)
ID_BACK_FIELDS = (
    FieldSpec("issuing_authority", "签发机关"),
    FieldSpec("valid_period", "有效期限", "period", ("有效期",)),
)

# Keyword -> weight for recognising a page; a type needs a total of at least _MIN_TYPE_SCORE, so
# one stray word ("姓名" on a boarding pass) is not enough.
_LICENCE_KEYS = {"营业执照": 3, "统一社会信用代码": 3, "经营范围": 2, "注册资本": 2, "营业期限": 2,
                 "法定代表人": 1, "成立日期": 1, "登记机关": 1, "住所": 1, "类型": 1, "名称": 1}
_ID_FRONT_KEYS = {"公民身份号码": 3, "性别": 2, "民族": 2, "住址": 2, "姓名": 1, "出生": 1}
_ID_BACK_KEYS = {"居民身份证": 3, "签发机关": 3, "有效期限": 2, "中华人民共和国": 1}
_MIN_TYPE_SCORE = 4
_MIN_SIDE_SCORE = 2


def _score(text: str, keys: dict[str, int]) -> int:
    return sum(weight for key, weight in keys.items() if key in text)


def detect_type(page: Page) -> str | None:
    """The document type whose printed keywords the page carries, or None."""
    text = page.full_text()
    licence = _score(text, _LICENCE_KEYS)
    id_card = _score(text, _ID_FRONT_KEYS) + _score(text, _ID_BACK_KEYS)
    best = max((licence, BUSINESS_LICENCE), (id_card, ID_CARD))
    return best[1] if best[0] >= _MIN_TYPE_SCORE else None


def specs_for(page: Page, doc_type: str) -> tuple[FieldSpec, ...]:
    """Fields expected on this page: for an ID card, the side(s) whose keywords are present."""
    if doc_type == BUSINESS_LICENCE:
        return (*LICENCE_FIELDS, REGISTRATION_DATE)
    text = page.full_text()
    front = _score(text, _ID_FRONT_KEYS) >= _MIN_SIDE_SCORE
    back = _score(text, _ID_BACK_KEYS) >= _MIN_SIDE_SCORE
    if front == back:  # both sides on one scan, or nothing recognisable: ask for every field
        return (*ID_FRONT_FIELDS, *ID_BACK_FIELDS)
    return ID_FRONT_FIELDS if front else ID_BACK_FIELDS


def extract(page: Page, doc_type: str) -> dict[str, FieldResult]:
    """Fields of a page read as `doc_type`, each with value, score, box and status."""
    specs = specs_for(page, doc_type)
    labelled = [s for s in specs if s is not REGISTRATION_DATE]
    spans = read_labelled(page, [s.label_spec() for s in labelled])
    out: dict[str, FieldResult] = {}
    for spec in labelled:
        span = spans.get(spec.key)
        if spec.kind in ("credit_code", "id_number"):
            span = _best_code(page, spec.kind, span)
        inferred = False
        if (span is None or not span.text) and spec.above and spans.get(spec.above):
            span = value_above(page, spans[spec.above])
            inferred = span is not None
        if span is None or not span.text:
            out[spec.key] = missing(spec.key, spec.label)
            continue
        result = finish(spec.key, spec.label, spec.kind, span.text, span.score, span.box)
        # Read, but its label was not: the value comes from the certificate's layout alone.
        out[spec.key] = _with_status(result, "low_confidence") if inferred and result.status == "valid" else result
    if REGISTRATION_DATE in specs:
        span = _registration_date(page, spans.get("registration_authority"))
        out[REGISTRATION_DATE.key] = (
            finish(REGISTRATION_DATE.key, REGISTRATION_DATE.label, "date", span.text, span.score, span.box)
            if span
            else missing(REGISTRATION_DATE.key, REGISTRATION_DATE.label)
        )
    if doc_type == ID_CARD:
        _cross_check_id(out)
    return out


def _best_code(page: Page, kind: str, labelled: Span | None) -> Span | None:
    """The labelled value when it is a valid code; else any row of the page holding a valid code
    (labels get misread, codes get split from them); else the labelled value as read."""
    if labelled is not None and labelled.text and clean_code(kind, labelled.text)[1] == "valid":
        return labelled
    for r, text in enumerate(page.row_text):
        value, status = clean_code(kind, text)
        if status != "valid":
            continue
        for token in page.rows[r]:  # narrow the box to the token(s) that carry the code
            if clean_code(kind, token.text)[1] == "valid":
                return page.token_span([token])
        return page.token_span(page.rows[r])
    return labelled


def _registration_date(page: Page, authority: Span | None) -> Span | None:
    """The unlabelled date printed under 登记机关 (or, without that label, the lowest date)."""
    dated = [
        (r, t) for r, row in enumerate(page.rows) for t in row if len(t.text) <= 14 and parse_date(t.text) is not None
    ]
    if authority is not None and authority.tokens:
        anchor = next(r for r, row in enumerate(page.rows) if any(t.index in authority.tokens for t in row))
        below = [t for r, t in dated if anchor < r <= anchor + 3]
        if below:
            return page.token_span([below[0]])
    return page.token_span([dated[-1][1]]) if dated else None


def _cross_check_id(fields: dict[str, FieldResult]) -> None:
    """Birth date and sex printed on the card must agree with the ID number."""
    number = fields.get("id_number")
    if number is None or number.status != "valid" or number.value is None:
        return
    expected = {"birth_date": id_birth_date(number.value).isoformat(), "sex": id_sex(number.value)}
    for key, want in expected.items():
        field = fields.get(key)
        readable = field is not None and field.value is not None and field.status in ("valid", "low_confidence")
        if readable and field.value != want:
            fields[key] = _with_status(field, "inconsistent")
            fields["id_number"] = _with_status(fields["id_number"], "inconsistent")


def _with_status(field: FieldResult, status: str) -> FieldResult:
    return FieldResult(field.key, field.label, field.value, field.score, field.box, status)


__all__ = ["DOCUMENT_TYPES", "FieldSpec", "detect_type", "extract"]
