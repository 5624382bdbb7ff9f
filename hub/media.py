"""Safe decoding of untrusted images: the boundary where PIL errors become hub errors.

>>> rgb = decode_image(open("bus.jpg", "rb").read())   # HxWx3 uint8, EXIF orientation applied
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hub.errors import InvalidInput, PayloadTooLarge

DEFAULT_MAX_PIXELS = 50_000_000  # ~ 8K x 6K; beyond this a camera frame or scan is not plausible


def image_size(data: bytes, *, field: str = "image") -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    if not data:
        raise InvalidInput("image is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}", field=field) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError) as exc:  # ImportError: a plugin that fails to load
        raise InvalidInput("image could not be decoded (expected JPEG, PNG, BMP or WebP)", field=field) from exc


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, field: str = "image") -> np.ndarray:
    """Decode to an RGB uint8 array, refusing decompression bombs before any pixel is decoded."""
    width, height = image_size(data, field=field)
    if width <= 0 or height <= 0:
        raise InvalidInput("image has no pixels", field=field)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}", field=field
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img = ImageOps.exif_transpose(img)
                return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError,
            Image.DecompressionBombError) as exc:
        raise InvalidInput(f"image could not be decoded: {exc}", field=field) from exc


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
