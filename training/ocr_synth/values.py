"""What synthetic certificates say: people, companies, addresses, dates, and codes with correct
check characters (GB 32100-2015 credit codes, GB 11643-1999 ID numbers). Printed strings, as the
renderer draws them.

>>> licence_values(random.Random(1))["credit_code"]
'91420704MA4...'
"""

from __future__ import annotations

import datetime as dt
import random

from models.ocr.checksums import (
    CREDIT_CODE_ALPHABET,
    credit_code_check_char,
    id_check_char,
    org_code_check_char,
)

REGIONS = (  # province, city, district, GB/T 2260 code
    ("湖北省", "鄂州市", "鄂城区", "420704"),
    ("湖北省", "鄂州市", "华容区", "420703"),
    ("湖北省", "鄂州市", "梁子湖区", "420702"),
    ("湖北省", "武汉市", "洪山区", "420111"),
    ("湖北省", "武汉市", "江夏区", "420115"),
    ("湖北省", "黄石市", "下陆区", "420204"),
    ("湖北省", "黄冈市", "黄州区", "421102"),
    ("湖北省", "孝感市", "孝南区", "420902"),
    ("广东省", "广州市", "天河区", "440106"),
    ("浙江省", "杭州市", "西湖区", "330106"),
    ("四川省", "成都市", "武侯区", "510107"),
    ("湖南省", "长沙市", "岳麓区", "430104"),
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶贺顾毛郝龚邵万钱严武戴孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华文辉建国玲红鹏飞宇浩然晨欣怡涵梓轩博俊佳雨思嘉琪志海峰林斌波东亮新云春梅婷雪燕萍晶慧莉倩颖丹琳凯旭阳健宁"
ETHNICITIES = ("汉",) * 12 + ("回", "满", "蒙古", "土家", "苗", "壮", "维吾尔", "藏", "彝", "侗")
ROADS = (
    "滨湖南路",
    "寿山大道",
    "南浦路",
    "古城路",
    "吴都大道",
    "光谷大道",
    "雄楚大道",
    "文化路",
    "建设街",
    "江夏大道",
    "人民路",
    "解放大道",
    "和平街",
)
BRANDS = "鑫源恒泰华盛达通宏远金瑞凯博信诚德嘉和兴丰隆祥鸿润星光明天宇安康永昌新锦"
INDUSTRIES = (
    "科技",
    "商贸",
    "建筑工程",
    "物流",
    "餐饮管理",
    "信息技术",
    "农业发展",
    "环保科技",
    "机械设备",
    "电子商务",
    "文化传媒",
    "装饰工程",
)
COMPANY_TYPES = (
    "有限责任公司（自然人投资或控股）",
    "有限责任公司（自然人独资）",
    "其他有限责任公司",
    "股份有限公司（非上市）",
    "有限责任公司（国有独资）",
)
SCOPE_ITEMS = (
    "技术开发",
    "技术咨询",
    "技术服务",
    "计算机软硬件销售",
    "货物进出口",
    "建筑材料销售",
    "日用百货销售",
    "道路货物运输",
    "餐饮服务",
    "会议及展览服务",
    "农产品收购",
    "机械设备租赁",
    "室内装饰工程施工",
    "广告设计、制作",
    "仓储服务（不含危险化学品）",
    "五金产品零售",
    "办公用品销售",
    "信息系统集成服务",
)
SCOPE_TAIL = "（依法须经批准的项目，经相关部门批准后方可开展经营活动）"
CAPITAL_WAN = (10, 30, 50, 100, 150, 200, 300, 500, 800, 1000, 1200, 2000, 5000)


def _capital_words(wan: int) -> str:
    digits, units = "零壹贰叁肆伍陆柒捌玖", ("仟", "佰", "拾", "")
    text, zero = "", False
    for unit, d in zip(units, f"{wan:04d}", strict=True):
        if d == "0":
            zero = bool(text)
            continue
        text += ("零" if zero else "") + digits[int(d)] + unit
        zero = False
    return text + "万元整"


def _date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def _address(rng: random.Random, region: tuple[str, ...]) -> str:
    province, city, district, _ = region
    tail = rng.choice(
        (
            f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(1, 30)}0{rng.randint(1, 4)}室",
            "",
            f"{rng.randint(2, 28)}楼",
        )
    )
    return f"{province}{city}{district}{rng.choice(ROADS)}{rng.randint(1, 399)}号{tail}"


def credit_code(rng: random.Random, region_code: str) -> str:
    body = "MA4" + "".join(rng.choice(CREDIT_CODE_ALPHABET) for _ in range(5))
    first17 = "91" + region_code + body + org_code_check_char(body)
    return first17 + credit_code_check_char(first17)


def id_number(rng: random.Random, region_code: str, birth: dt.date, sex: str) -> str:
    seq = rng.randrange(0, 100) * 10 + rng.choice((1, 3, 5, 7, 9) if sex == "男" else (0, 2, 4, 6, 8))
    first17 = f"{region_code}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_char(first17)


def licence_values(rng: random.Random) -> dict[str, str]:
    """Printed strings of one business licence (as printed, before normalisation)."""
    region = rng.choice(REGIONS)
    established = _date(rng, dt.date(2000, 1, 1), dt.date(2023, 12, 31))
    registered = _date(rng, established, dt.date(2024, 12, 31))
    if rng.random() < 0.7:
        term = f"{established:%Y年%m月%d日} 至 长期"
    else:
        term = f"{established:%Y年%m月%d日} 至 {established.replace(year=established.year + 20) - dt.timedelta(days=1):%Y年%m月%d日}"
    items = rng.sample(SCOPE_ITEMS, rng.randint(3, 6))
    authority = rng.choice((f"{region[1]}市场监督管理局", f"{region[1]}{region[2]}市场监督管理局"))
    return {
        "credit_code": credit_code(rng, region[3]),
        "name": region[1]
        + rng.choice(BRANDS)
        + rng.choice(BRANDS)
        + rng.choice(INDUSTRIES)
        + rng.choice(("有限公司", "有限责任公司")),
        "type": rng.choice(COMPANY_TYPES),
        "legal_representative": _person(rng),
        "business_scope": "；".join(items) + "。" + SCOPE_TAIL,
        "registered_capital": _capital_words(rng.choice(CAPITAL_WAN)),
        "established_date": f"{established:%Y年%m月%d日}",
        "business_term": term,
        "address": _address(rng, region),
        "registration_authority": authority,
        "registration_date": f"{registered:%Y年%m月%d日}",
    }


def id_values(rng: random.Random) -> dict[str, str]:
    region = rng.choice(REGIONS)
    birth = _date(rng, dt.date(1950, 1, 1), dt.date(2006, 12, 31))
    sex = rng.choice("男女")
    issued = _date(rng, max(birth.replace(year=birth.year + 16), dt.date(2005, 1, 1)), dt.date(2024, 12, 31))
    age = (issued - birth).days // 365
    years = 10 if age < 26 else 20 if age < 46 else None
    end = "长期" if years is None else f"{issued.replace(year=issued.year + years):%Y.%m.%d}"
    return {
        "name": _person(rng),
        "sex": sex,
        "ethnicity": rng.choice(ETHNICITIES),
        "birth_date": f"{birth.year} 年 {birth.month} 月 {birth.day} 日",
        "address": _address(rng, region),
        "id_number": id_number(rng, region[3], birth, sex),
        "issuing_authority": rng.choice((f"{region[1]}公安局", f"{region[1]}公安局{region[2]}分局")),
        "valid_period": f"{issued:%Y.%m.%d}-{end}",
    }
