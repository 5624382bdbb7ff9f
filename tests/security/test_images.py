"""Image decoding accepts JPEG, PNG, BMP, WebP and TIFF only, judged by magic bytes before PIL sees
the data, and caps decoded pixels per batch as well as per image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hub.errors import InvalidInput, Overloaded, PayloadTooLarge
from hub.media import PixelBudget, decode_image, sniff_format


def encoded(fmt: str, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_allowed_formats_decode(fmt):
    data = encoded(fmt)
    assert sniff_format(data) == fmt
    assert decode_image(data).shape == (30, 40, 3)


REFUSED = [
    ("eps (ghostscript)", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
    ("gif", encoded("GIF")),
    ("ico", encoded("ICO", (16, 16))),
    ("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\n"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
    ("ppm", encoded("PPM")),
    ("text", b"hello, not an image"),
    ("empty", b""),
    ("jpeg magic, garbage after", b"\xff\xd8\xff" + b"\x00" * 64),
    ("truncated png", encoded("PNG")[:40]),
    ("webp header only", b"RIFF\x10\x00\x00\x00WEBPVP8 "),
]


@pytest.mark.parametrize("case,data", REFUSED, ids=[c[0] for c in REFUSED])
def test_other_formats_and_broken_images_are_refused(case, data):
    with pytest.raises(InvalidInput):
        decode_image(data)


def test_pixel_cap_per_image():
    with pytest.raises(PayloadTooLarge):
        decode_image(encoded("PNG", (100, 100)), max_pixels=5_000)


def test_pixel_cap_per_batch():
    budget = PixelBudget(max_pixels=2_000)  # one 40x30 image fits, a second does not
    decode_image(encoded("PNG"), budget=budget)
    with pytest.raises(Overloaded, match="per batch"):
        decode_image(encoded("JPEG"), budget=budget)
    assert budget.used == 1_200
