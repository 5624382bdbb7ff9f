"""Safe decoding of untrusted images: the boundary where PIL errors become hub errors.

Only JPEG, PNG, BMP, WebP and TIFF are decoded, recognised by their first bytes before PIL sees
them (PIL knows ~40 formats; EPS alone would run Ghostscript). Pixels are capped per image and,
with a `PixelBudget`, per batch: 8 images of 50 Mpx would otherwise decode to 1.2 GB at once.

>>> rgb = decode_image(open("bus.jpg", "rb").read())   # HxWx3 uint8, EXIF orientation applied
>>> budget = PixelBudget(100_000_000); [decode_image(b, budget=budget) for b in batch]
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hub.errors import InvalidInput, Overloaded, PayloadTooLarge

DEFAULT_MAX_PIXELS = 50_000_000  # ~ 8K x 6K; beyond this a camera frame or scan is not plausible
DEFAULT_MAX_BATCH_PIXELS = 100_000_000  # one batch decodes at most ~300 MB of RGB
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
ALLOWED = "JPEG, PNG, BMP, WebP or TIFF"


def sniff_format(data: bytes) -> str | None:
    """The image format by magic bytes, among the allowed ones; None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


class PixelBudget:
    """Pixels one batch may still decode; `decode_image(..., budget=)` takes from it."""

    def __init__(self, max_pixels: int = DEFAULT_MAX_BATCH_PIXELS) -> None:
        self.max_pixels = max_pixels
        self.used = 0

    def take(self, pixels: int, field: str) -> None:
        if self.used + pixels > self.max_pixels:
            raise Overloaded(f"this batch already decodes {self.used} pixels; {pixels} more would pass the cap of "
                             f"{self.max_pixels} per batch: send the image again", field=field)
        self.used += pixels


def _open(data: bytes, field: str):
    kind = sniff_format(data)
    if kind is None:
        raise InvalidInput(f"image is not {ALLOWED} (by its first bytes)", field=field)
    return Image.open(io.BytesIO(data), formats=[kind])


def image_size(data: bytes, *, field: str = "image") -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    if not data:
        raise InvalidInput("image is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(data, field) as img:
                return img.size
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}", field=field) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError) as exc:  # ImportError: a plugin that fails to load
        raise InvalidInput(f"image could not be decoded (expected {ALLOWED})", field=field) from exc


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image",
                 budget: PixelBudget | None = None) -> np.ndarray:
    """Decode to an RGB uint8 array, refusing decompression bombs before any pixel is decoded."""
    width, height = image_size(data, field=field)
    if width <= 0 or height <= 0:
        raise InvalidInput("image has no pixels", field=field)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}", field=field
        )
    if budget is not None:
        budget.take(width * height, field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(data, field) as img:
                img = ImageOps.exif_transpose(img)
                return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError,
            Image.DecompressionBombError) as exc:
        raise InvalidInput(f"image could not be decoded: {exc}", field=field) from exc


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
