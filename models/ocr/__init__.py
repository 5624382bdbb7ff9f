"""The `read` capability: PP-OCR (ONNX Runtime) text lines and validated certificate fields.

Modules: `engine` (det/cls/rec models, batched recognition in width buckets), `geometry` (DB
boxes, crops, reading order), `page` (normalised text, deskewed rows), `layout` (labels, values,
wrapped lines), `documents` (营业执照 and 居民身份证 fields), `fields` (typed values and
statuses), `checksums` (GB 32100-2015, GB 11643-1999, masking), `artifact` (the default model),
`reader` (the capability class and its wire types).

>>> from models.ocr import OcrReader, ReadRequest
"""

from models.ocr.artifact import prepare_default
from models.ocr.reader import FieldValue, OcrReader, ReadRequest, ReadResponse, TextLine

__all__ = ["FieldValue", "OcrReader", "ReadRequest", "ReadResponse", "TextLine", "prepare_default"]
