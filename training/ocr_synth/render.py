"""Drawing of synthetic certificates with a CJK font: 营业执照 in the 2019 two-column and the
older one-column layout, 居民身份证 front and back; and `photograph`, which makes a bad photo of
one (desk, rotation up to ±10°, perspective, uneven light, blur, noise, JPEG).

>>> image = render_id_front(id_values(rng), rng, np.random.default_rng(0))
>>> jpeg = photograph(image, rng, np.random.default_rng(0))
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)


def font_path() -> Path:
    for path in FONT_PATHS:
        if path.exists():
            return path
    raise FileNotFoundError("no CJK font: apt-get install fonts-wqy-zenhei (or fonts-noto-cjk)")


class _Fonts:
    """The CJK font at each size, found on first use (importing needs no font)."""

    def __init__(self) -> None:
        self._cache: dict[int, ImageFont.FreeTypeFont] = {}

    def __call__(self, size: int) -> ImageFont.FreeTypeFont:
        if size not in self._cache:
            self._cache[size] = ImageFont.truetype(str(font_path()), size)
        return self._cache[size]


FONTS = _Fonts()


def _text(
    draw: ImageDraw.ImageDraw, xy, text: str, size: int, fill=(20, 20, 20), tracking: float = 0.0
) -> float:
    """Draw text with extra letter spacing (in em); returns the x after the last glyph."""
    font = FONTS(size)
    x, y = xy
    for ch in text:
        draw.text((x, y), ch, font=font, fill=fill)
        x += font.getlength(ch) + tracking * size
    return x


def _justified(draw, xy, label: str, size: int, width: float, fill=(20, 20, 20)) -> None:
    """A label spread over a fixed width, as certificates align their keys ("名　　称")."""
    if len(label) == 1:
        _text(draw, xy, label, size, fill)
        return
    step = (width - size) / (len(label) - 1)
    for i, ch in enumerate(label):
        draw.text((xy[0] + i * step, xy[1]), ch, font=FONTS(size), fill=fill)


def _wrap(text: str, size: int, width: float) -> list[str]:
    font, lines, line = FONTS(size), [], ""
    for ch in text:
        if line and font.getlength(line + ch) > width:
            lines.append(line)
            line = ""
        line += ch
    return [*lines, line] if line else lines


def _paper(size: tuple[int, int], rng: np.random.Generator, tint: tuple[int, int, int]) -> Image.Image:
    w, h = size
    base = np.ones((h, w, 3), np.float32) * np.array(tint, np.float32)
    base += rng.normal(0, 3, (h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(3):  # faint guilloche-like waves
        f, phase = rng.uniform(0.01, 0.03), rng.uniform(0, 6.28)
        wave = np.sin(xx * f + np.sin(yy * f * 1.7 + phase) * 3) > 0.97
        base[wave] -= rng.uniform(6, 14)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _emblem(draw, center, radius) -> None:
    """A stand-in for the national emblem: red disc, gold rim, one large and four small stars."""
    cx, cy = center
    draw.ellipse(
        (cx - radius, cy - radius, cx + radius, cy + radius),
        fill=(200, 30, 30),
        outline=(230, 180, 40),
        width=4,
    )
    draw.regular_polygon((cx - radius * 0.3, cy - radius * 0.25, radius * 0.3), 5, fill=(240, 200, 50))
    for k in range(4):
        a = math.radians(-60 + k * 35)
        draw.regular_polygon(
            (
                cx + radius * 0.15 + radius * 0.45 * math.cos(a),
                cy - radius * 0.2 + radius * 0.45 * math.sin(a),
                radius * 0.1,
            ),
            5,
            fill=(240, 200, 50),
        )
    draw.rectangle(
        (cx - radius * 0.6, cy + radius * 0.35, cx + radius * 0.6, cy + radius * 0.55), fill=(230, 180, 40)
    )


def _seal(img: Image.Image, center, radius: int, text: str) -> None:
    """A translucent red seal ring with arc text and a star, stamped over what is below it."""
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = center
    d.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=(220, 30, 30, 150), width=6)
    d.regular_polygon((cx, cy, radius * 0.28), 5, fill=(220, 30, 30, 150))
    size = int(radius * 0.3)
    for i, ch in enumerate(text):
        a = math.radians(-150 + i * 120 / max(len(text) - 1, 1))
        x, y = cx + radius * 0.72 * math.cos(a), cy + radius * 0.72 * math.sin(a)
        glyph = Image.new("RGBA", (size + 4, size + 4), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((2, 0), ch, font=FONTS(size), fill=(220, 30, 30, 160))
        glyph = glyph.rotate(-math.degrees(a) - 90, expand=True)
        layer.alpha_composite(glyph, (int(x - glyph.width / 2), int(y - glyph.height / 2)))
    img.paste(Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB"))


def _qr(draw, xy, size: int, rng: random.Random) -> None:
    """A QR-code look-alike: random modules and three finder squares."""
    cells, (x0, y0) = 25, xy
    cell = size / cells
    for i in range(cells):
        for j in range(cells):
            if rng.random() < 0.5:
                draw.rectangle(
                    (x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell, y0 + (i + 1) * cell),
                    fill=(15, 15, 15),
                )
    for fx, fy in ((0, 0), (cells - 7, 0), (0, cells - 7)):
        for k, colour in enumerate(((15, 15, 15), (255, 255, 255), (15, 15, 15))):
            inset = (0, 1, 2)[k] * cell
            draw.rectangle(
                (
                    x0 + fx * cell + inset,
                    y0 + fy * cell + inset,
                    x0 + (fx + 7) * cell - inset,
                    y0 + (fy + 7) * cell - inset,
                ),
                fill=colour,
            )


_LICENCE_LABELS = {
    "name": "名称",
    "type": "类型",
    "legal_representative": "法定代表人",
    "business_scope": "经营范围",
    "registered_capital": "注册资本",
    "established_date": "成立日期",
    "business_term": "营业期限",
    "address": "住所",
}


def render_licence(values: dict[str, str], rng: random.Random, nprng: np.random.Generator) -> Image.Image:
    two_columns = rng.random() < 0.65  # the 2019 layout; otherwise the older one-column layout
    W, H = 1500, 1060 if two_columns else 1150
    img = _paper((W, H), nprng, (250, 246, 236))
    d = ImageDraw.Draw(img)
    frame = (150, 105, 60)
    d.rectangle((24, 24, W - 24, H - 24), outline=frame, width=6)
    d.rectangle((40, 40, W - 40, H - 40), outline=frame, width=2)
    _emblem(d, (W // 2, 100), 52)
    _text(d, (W // 2 - 250, 165), "营业执照", 92, fill=(165, 25, 25), tracking=0.45)
    _text(d, (W // 2 - 55, 280), "（副 本）", 28)
    size, label_w = 28, 150
    if two_columns:
        _text(d, (100, 200), "统一社会信用代码", 24)
        _text(d, (100, 236), values["credit_code"], 30, tracking=0.06)
        _text(d, (100, 284), f"证照编号：{rng.randrange(10**15, 10**16)}", 20)
        _qr(d, (1230, 95), 140, rng)
        for i, line in enumerate(("扫描市场主体身份码", "了解更多登记、备案、", "许可、监管信息")):
            _text(d, (1215, 245 + i * 24), line, 18)
        columns = (
            (100, ("name", "type", "legal_representative", "business_scope"), 450),
            (790, ("registered_capital", "established_date", "business_term", "address"), 430),
        )
        top, pitch = 370, 64
    else:
        _text(d, (880, 282), f"统一社会信用代码 {values['credit_code']}", 26)
        columns = (
            (
                230,
                (
                    "name",
                    "type",
                    "address",
                    "legal_representative",
                    "registered_capital",
                    "established_date",
                    "business_term",
                    "business_scope",
                ),
                820,
            ),
        )
        top, pitch = 360, 60
    bottom = 0
    for x, keys, value_w in columns:
        y = top
        for key in keys:
            _justified(d, (x, y), _LICENCE_LABELS[key], size, label_w)
            lines = _wrap(values[key], size, value_w)
            for k, line in enumerate(lines):
                _text(d, (x + label_w + 40, y + k * 42), line, size)
            bottom = max(bottom, y + 42 * len(lines))
            y += pitch + 42 * (len(lines) - 1)
    ax, ay = (930, max(880, bottom + 30)) if two_columns else (880, max(900, bottom + 30))
    _justified(d, (ax, ay), "登记机关", size, 120)
    _text(d, (ax + 150, ay), values["registration_authority"], size)
    _text(
        d,
        (ax + 150, ay + 60),
        values["registration_date"].replace("年", " 年 ").replace("月", " 月 ").replace("日", " 日"),
        size,
    )
    _seal(img, (ax + 330 + rng.randint(-40, 40), ay + 35), 85, values["registration_authority"])
    _text(d, (100, H - 86), "国家企业信用信息公示系统网址：http://www.gsxt.gov.cn", 18)
    _text(
        d,
        (100, H - 62),
        "市场主体应当于每年1月1日至6月30日通过国家企业信用信息公示系统报送公示年度报告。",
        18,
    )
    _text(d, (W - 330, H - 62), "国家市场监督管理总局监制", 18)
    return img


def render_id_front(v: dict[str, str], rng: random.Random, nprng: np.random.Generator) -> Image.Image:
    img = _paper((856, 540), nprng, (232, 238, 242))
    d = ImageDraw.Draw(img)
    label = (70, 110, 160)
    _text(d, (60, 58), "姓名", 24, label, tracking=0.5)
    _text(d, (160, 52), v["name"], 32)
    _text(d, (60, 122), "性别", 24, label, tracking=0.5)
    _text(d, (160, 118), v["sex"], 28)
    _text(d, (290, 122), "民族", 24, label, tracking=0.5)
    _text(d, (390, 118), v["ethnicity"], 28)
    _text(d, (60, 186), "出生", 24, label, tracking=0.5)
    x = 160
    for part in v["birth_date"].split():  # "1987 年 5 月 3 日": numbers in black, units as labels
        number = part.isdigit()
        x = (
            _text(
                d, (x, 182 if number else 186), part, 28 if number else 24, (20, 20, 20) if number else label
            )
            + 14
        )
    _text(d, (60, 250), "住址", 24, label, tracking=0.5)
    for k, line in enumerate(_wrap(v["address"], 28, 340)):
        _text(d, (160, 246 + k * 40), line, 28)
    _text(d, (60, 440), "公民身份号码", 24, label, tracking=0.2)
    _text(d, (300, 434), v["id_number"], 34, tracking=0.12)
    # Photo: a grey-blue panel with a head-and-shoulders silhouette.
    d.rectangle((575, 70, 800, 360), fill=(214, 222, 232))
    d.ellipse((640, 110, 735, 225), fill=(120, 120, 125))
    d.pieslice((600, 215, 775, 420), 180, 360, fill=(90, 90, 100))
    return img


def render_id_back(v: dict[str, str], rng: random.Random, nprng: np.random.Generator) -> Image.Image:
    img = _paper((856, 540), nprng, (236, 240, 236))
    d = ImageDraw.Draw(img)
    _emblem(d, (120, 120), 70)
    _text(d, (260, 70), "中华人民共和国", 42, tracking=0.35)
    _text(d, (250, 160), "居民身份证", 64, tracking=0.3)
    label = (60, 60, 60)
    _text(d, (150, 382), "签发机关", 26, label, tracking=0.1)
    _text(d, (290, 378), v["issuing_authority"], 28)
    _text(d, (150, 446), "有效期限", 26, label, tracking=0.1)
    _text(d, (290, 442), v["valid_period"], 28)
    return img


# --- a bad photo of it ---------------------------------------------------------------------------


def photograph(
    doc: Image.Image, rng: random.Random, nprng: np.random.Generator, quality_range=(40, 90)
) -> bytes:
    """Lay the document on a desk, rotate (±10°), tilt, light unevenly, blur, add noise, JPEG it."""
    w, h = doc.size
    margin = int(0.07 * max(w, h))
    desk = tuple(int(c) for c in nprng.integers(60, 200, 3))
    canvas = Image.new("RGB", (w + 2 * margin, h + 2 * margin), desk)
    canvas.paste(doc, (margin, margin))
    canvas = canvas.rotate(rng.uniform(-10, 10), resample=Image.BICUBIC, expand=True, fillcolor=desk)
    cw, ch = canvas.size
    jitter = 0.02 * min(cw, ch)
    quad = [c + rng.uniform(-jitter, jitter) for c in (0, 0, 0, ch, cw, ch, cw, 0)]
    canvas = canvas.transform((cw, ch), Image.QUAD, quad, resample=Image.BICUBIC, fillcolor=desk)
    arr = np.asarray(canvas, np.float32)
    yy, xx = np.mgrid[0:ch, 0:cw]
    angle = rng.uniform(0, 2 * math.pi)
    light = 1.0 + rng.uniform(0.05, 0.2) * (
        (xx / cw - 0.5) * math.cos(angle) + (yy / ch - 0.5) * math.sin(angle)
    )
    arr = arr * light[..., None] * rng.uniform(0.85, 1.05) + nprng.normal(0, rng.uniform(1, 6), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(*quality_range))
    return buf.getvalue()
