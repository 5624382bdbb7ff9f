"""Chinese text normalisation for speech synthesis: write out numbers the way a person reads them.

Rules, in the order they apply (earlier rules claim their digits first):
- dates `2024年3月5日`, `2024-03-05`, `2024/3/5` -> 二零二四年三月五日 (years digit by digit);
- clock times `14:30` -> 十四点三十分;
- phone numbers read digit by digit with 幺 for 1: mobiles (1[3-9] + 9 digits), landlines
  (`0711-3210123`), service numbers (12345, 110, 120, ...), digits after 电话/热线/拨打/编号/... and any
  other run of 7+ digits not followed by a unit (IDs, account numbers);
- percentages `50%` -> 百分之五十, money `¥20` -> 二十元, units `5km` -> 五公里, `30℃` -> 三十摄氏度;
- ranges `3-5天` -> 三到五天, decimals `3.5` -> 三点五, integers `12000` -> 一万两千... (two before a
  measure word: 2个 -> 两个).

>>> normalize_zh("请拨打12345热线，或于2024年3月5日14:30前来，费用约¥20.5")
'请拨打幺二三四五热线，或于二零二四年三月五日十四点三十分前来，费用约二十点五元'
"""

from __future__ import annotations

import re

DIGITS = "零一二三四五六七八九"
PHONE_DIGITS = "零幺二三四五六七八九"  # on the phone 1 is 幺 so that it is not heard as 7
_UNITS = ["", "万", "亿", "万亿"]

# Service numbers that are always read digit by digit.
SERVICE_NUMBERS = ("12345", "12315", "12306", "12319", "12320", "12328", "12333", "12345", "12358",
                   "12366", "12369", "96110", "110", "119", "120", "122")
# Words after which a number is an identifier, read digit by digit.
_ID_CUES = r"(?:电话|热线|拨打|致电|手机|号码|联系方式|编号|工号|单号|尾号|房间|房号|账号|卡号|证号|邮编|工单|QQ|qq|微信)"
_MEASURE_WORDS = "个位次天名件辆条张台年周岁斤户家栋层间只项份所套本处座部起例批"
# A number followed by one of these is a quantity, never a phone number or an identifier.
_QUANTITY_AFTER = _MEASURE_WORDS + "人元块角万亿千百倍米克吨升度秒分时里公平立毫厘"

# Unit symbols after a number, longest first so that km/h wins over km and m.
UNIT_WORDS = {
    "km/h": "公里每小时", "m/s": "米每秒", "kWh": "千瓦时", "kwh": "千瓦时", "km²": "平方公里", "m²": "平方米",
    "m2": "平方米", "m³": "立方米", "m3": "立方米", "°C": "摄氏度", "℃": "摄氏度", "km": "公里",
    "kg": "公斤", "cm": "厘米", "mm": "毫米", "ml": "毫升", "mL": "毫升", "kW": "千瓦", "kw": "千瓦",
    "dB": "分贝", "min": "分钟", "mg": "毫克", "L": "升", "g": "克", "t": "吨", "m": "米", "h": "小时",
    "s": "秒", "°": "度",
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(UNIT_WORDS, key=len, reverse=True))
_LONG_UNIT_RE = "|".join(re.escape(u) for u in sorted(UNIT_WORDS, key=len, reverse=True) if len(u) > 1 or not u.isascii())
_FULLWIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "％": "%", "．": ".", "＄": "$",
                             "㎡": "m²", "㎞": "km", "㎏": "kg", "㎝": "cm", "㎜": "mm", "℃": "℃"})
_NOT_DIGIT_BEFORE = r"(?<![\d.])"
_NOT_DIGIT_AFTER = r"(?![\d])"
_NOT_QUANTITY = r"(?![.%][\d]?|(?:" + _UNIT_RE + r")(?![A-Za-z])|[" + _QUANTITY_AFTER + r"])"


def read_digits(digits: str, *, phone: bool = True) -> str:
    """'0711' -> '零七幺幺' (phone style) or '零七一一'."""
    table = PHONE_DIGITS if phone else DIGITS
    return "".join(table[int(d)] for d in digits if d.isdigit())


def _read_group(n: int) -> str:
    """0 < n < 10000, with 零 for inner zero runs."""
    out, pending_zero, started = [], False, False
    for digit, unit in zip(f"{n:04d}", ("千", "百", "十", ""), strict=True):
        if digit == "0":
            pending_zero = pending_zero or started
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        out.append(DIGITS[int(digit)] + unit)
        started = True
    return "".join(out)


def read_cardinal(n: int) -> str:
    """12005 -> 一万两千零五; 10 -> 十; 100010 -> 十万零一十."""
    if n < 0:
        return "负" + read_cardinal(-n)
    if n == 0:
        return "零"
    if n >= 10**16:
        return read_digits(str(n), phone=False)
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out, gap = "", False
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            gap = bool(out)
            continue
        if out and (gap or group < 1000):
            out += "零"
        out += _read_group(group) + _UNITS[index]
        gap = False
    if out.startswith("一十"):
        out = out[1:]
    # 两 reads better than 二 before 千/万/亿 (两千, 两万), and inside: 一万两千.
    return re.sub(r"二(?=[千万亿])", "两", out)


def read_number(text: str) -> str:
    """An integer or decimal string: '3.05' -> 三点零五, '007' -> 零零七."""
    sign = "负" if text.startswith("-") else ""
    text = text.lstrip("+-")
    whole, _, fraction = text.partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        spoken = read_digits(whole, phone=False)
    else:
        spoken = read_cardinal(int(whole or "0"))
    if fraction:
        spoken += "点" + read_digits(fraction, phone=False)
    return sign + spoken


def _date(m: re.Match) -> str:
    year, month, day = m.group("y"), m.group("m"), m.group("d")
    out = read_digits(year, phone=False) + "年" if year else ""
    if month:
        out += read_cardinal(int(month)) + "月"
    if day:
        out += read_cardinal(int(day)) + (m.group("suffix") or "日")
    return out


def _time(m: re.Match) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    out = read_cardinal(hour) + "点"
    if minute == 0 and not second:
        return out + "整"
    out += ("零" if minute < 10 else "") + read_cardinal(minute) + "分"
    if second:
        out += read_cardinal(int(second)) + "秒"
    return out


def _phone_text(number: str) -> str:
    # Groups of a phone number ("0711-3210123") are read with a short pause between them.
    return "，".join(read_digits(part) for part in re.split(r"[-\s]", number) if part)


def _phone(m: re.Match) -> str:
    return _phone_text(m.group(0))


def _integer(m: re.Match) -> str:
    ordinal, text, after = m.group(1) or "", m.group(2), m.group(3) or ""
    if text == "2" and after[:1] in _MEASURE_WORDS and not ordinal:  # 两个人, but 第二名
        return "两" + after
    return ordinal + read_number(text) + after


_RULES: list[tuple[re.Pattern, object]] = [
    # Dates: 2024年3月5日 / 2024-03-05 / 2024/3/5 / 2024.3.5 / 3月5日 / 2024年.
    (re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?P<suffix>[日号])?" + _NOT_DIGIT_AFTER), _date),
    (re.compile(r"(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?:(?P<d>\d{1,2})(?P<suffix>[日号]))?"), _date),
    (re.compile(r"(?P<y>\d{4})年(?P<m>)(?P<d>)(?P<suffix>)"), _date),
    (re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)"), _time),
    # Phone numbers and identifiers.
    (re.compile(_NOT_DIGIT_BEFORE + r"(?:0\d{2,3}-\d{7,8}|1[3-9]\d{9})" + _NOT_DIGIT_AFTER), _phone),
    (re.compile("(" + _ID_CUES + r")([:：是为\s]{0,2})(\d[\d-]*\d)"),
     lambda m: m.group(1) + m.group(2) + _phone_text(m.group(3))),
    (re.compile(_NOT_DIGIT_BEFORE + r"(?:" + "|".join(SERVICE_NUMBERS) + r")" + _NOT_DIGIT_AFTER + _NOT_QUANTITY), _phone),
    (re.compile(_NOT_DIGIT_BEFORE + r"\d{7,}" + _NOT_DIGIT_AFTER + _NOT_QUANTITY), _phone),
    # Quantities.
    (re.compile(r"(-?\d+(?:\.\d+)?)%"), lambda m: "百分之" + read_number(m.group(1))),
    (re.compile(r"[¥￥](\d+(?:\.\d+)?)"), lambda m: read_number(m.group(1)) + "元"),
    (re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[-~～至](\d+(?:\.\d+)?)(?![\d.])"),
     lambda m: read_number(m.group(1)) + "到" + read_number(m.group(2))),
    # "5 km" and "5km", but a lone letter only when it touches the number ("120s", not "120 s").
    (re.compile(r"(\d+(?:\.\d+)?)(?:\s?(" + _LONG_UNIT_RE + r")|(" + _UNIT_RE + r"))(?![A-Za-z])"),
     lambda m: read_number(m.group(1)) + UNIT_WORDS[m.group(2) or m.group(3)]),
    (re.compile(r"(?<![A-Za-z])-(?=\d)"), lambda m: "负"),
    (re.compile(r"(第)?(\d+(?:\.\d+)?)(\S?)"), _integer),
]


def normalize_zh(text: str) -> str:
    """Spell out the numbers of a Chinese text for a TTS engine (see the module docstring)."""
    text = text.translate(_FULLWIDTH)
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)
    return text
