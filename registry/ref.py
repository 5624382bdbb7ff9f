"""Model references: `models:/<name>@<alias>` or `models:/<name>/<version>`.

>>> ModelRef.parse("models:/yolov8n-coco@champion")
ModelRef(name='yolov8n-coco', alias='champion', version=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.errors import InvalidInput

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_REF = re.compile(rf"^models:/(?P<name>{_NAME})(?:@(?P<alias>[A-Za-z][A-Za-z0-9_\-]*)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if (self.alias is None) == (self.version is None):
            raise InvalidInput(f"a model reference needs exactly one of alias or version: {self}")

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        if isinstance(text, ModelRef):
            return text
        match = _REF.match(text.strip())
        if not match:
            raise InvalidInput(
                f"bad model reference {text!r}: expected models:/<name>@<alias> or models:/<name>/<version>",
                field="model",
            )
        return cls(match["name"], alias=match["alias"], version=match["version"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"
