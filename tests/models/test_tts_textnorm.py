"""models.textnorm_zh: how numbers in Chinese text are read aloud."""

from __future__ import annotations

import pytest

from models.textnorm_zh import normalize_zh, read_cardinal, read_digits, read_number


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (0, "零"), (7, "七"), (10, "十"), (15, "十五"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
        (1001, "一千零一"), (2000, "两千"), (12005, "一万两千零五"), (20000, "两万"), (100010, "十万零一十"),
        (1000000, "一百万"), (100000000, "一亿"), (120000300, "一亿两千万零三百"), (-5, "负五"),
    ],
)
def test_read_cardinal(n, spoken):
    assert read_cardinal(n) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [("3.14", "三点一四"), ("0.5", "零点五"), ("007", "零零七"), ("-2.5", "负二点五"), ("10.05", "十点零五")],
)
def test_read_number(text, spoken):
    assert read_number(text) == spoken


def test_read_digits_phone_style_uses_yao():
    assert read_digits("12345") == "幺二三四五"
    assert read_digits("12345", phone=False) == "一二三四五"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        # phone numbers and identifiers: digit by digit, 1 as 幺
        ("请拨打12345热线", "请拨打幺二三四五热线"),
        ("12345", "幺二三四五"),
        ("我的手机13812345678", "我的手机幺三八幺二三四五六七八"),
        ("座机0711-3210123", "座机零七幺幺，三二幺零幺二三"),
        ("工单编号：2024031500123", "工单编号：二零二四零三幺五零零幺二三"),
        ("房号1203", "房号幺二零三"),
        ("遇到危险拨打110", "遇到危险拨打幺幺零"),
        ("身份证号420700199001011234", "身份证号四二零七零零幺九九零零幺零幺幺二三四"),
        # the same digits as a quantity are a number
        ("共有12345人参加", "共有一万两千三百四十五人参加"),
        ("金额1000000元", "金额一百万元"),
        ("120米", "一百二十米"),
        # dates and times
        ("2024年3月5日", "二零二四年三月五日"),
        ("2024-03-05", "二零二四年三月五日"),
        ("2024/3/5", "二零二四年三月五日"),
        ("4月30号", "四月三十号"),
        ("2024年", "二零二四年"),
        ("下午14:30", "下午十四点三十分"),
        ("3:00", "三点整"),
        ("8:05", "八点零五分"),
        # units, money, percentages, ranges
        ("气温30℃", "气温三十摄氏度"),
        ("风速5km/h", "风速五公里每小时"),
        ("面积120㎡", "面积一百二十平方米"),
        ("5 km", "五公里"),
        ("重2.5kg", "重二点五公斤"),
        ("费用约¥20.5", "费用约二十点五元"),
        ("增长了50%", "增长了百分之五十"),
        ("等了3-5天", "等了三到五天"),
        # 两 before measure words, 二 for ordinals
        ("2个人", "两个人"),
        ("第2名", "第二名"),
        # full-width digits
        ("１２３４５", "幺二三四五"),
        # text without numbers is untouched
        ("您好，路灯坏了。", "您好，路灯坏了。"),
    ],
)
def test_normalize_zh(text, spoken):
    assert normalize_zh(text) == spoken
