"""Domain hotwords of the hotline's `listen` model: department names (the `reason` routing table), the
districts and streets callers name, and the terms of the 12345 category tree (configs/listen.yaml).

They are collected once, when the default model is built, and stored in the artifact (`hotwords.json`),
so a registered version decodes with exactly the words it was evaluated with.

>>> vocab = domain_vocabulary(Path("../shared"))
>>> vocab.language, vocab.words[:2]
('zh', ('市人力资源和社会保障局', '市住房和城乡建设局'))
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict, Field

from hub.contract import WireModel, validate_as
from hub.errors import InvalidInput
from hub.yamlconfig import read_yaml_mapping

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "listen.yaml"
HOTWORDS_FILE = "hotwords.json"


class ListenVocabularyConfig(WireModel):
    """configs/listen.yaml."""

    model_config = ConfigDict(frozen=True)  # merged with WireModel's: unknown keys refused

    language: str = "zh"
    prompt: str = "以下是普通话的句子。"
    max_hotword_tokens: int = Field(220, ge=0, le=222)  # Whisper keeps at most 222 hotword tokens
    reason_config: str | None = "configs/reason.yaml"
    places: list[str] = []
    taxonomy: str | None = None  # relative to the shared folder
    taxonomy_level: str = "level2"


@dataclass(frozen=True)
class DomainVocabulary:
    language: str
    prompt: str
    words: tuple[str, ...]
    max_tokens: int

    def to_json(self) -> dict:
        return {self.language: {"prompt": self.prompt, "hotwords": list(self.words), "max_tokens": self.max_tokens}}


def _departments(path: Path) -> list[str]:
    if not path.is_file():
        return []
    data = read_yaml_mapping(path, "reason config")
    names = [*dict(data.get("routing") or {}).values(), data.get("default_department")]
    # "市12345热线人工分派" is an internal queue, not a word a caller says
    return [str(n) for n in names if n and not any(ch.isdigit() for ch in str(n))]


def _taxonomy_terms(path: Path, column: str) -> list[str]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and column not in rows[0]:
        raise InvalidInput(f"{path} has no column {column!r} (columns: {list(rows[0])})")
    return [r[column].strip() for r in rows if r[column].strip() and r[column].strip() != "其他"]


def domain_vocabulary(shared_dir: Path, config_path: Path | None = None) -> DomainVocabulary:
    """Departments, then places, then taxonomy terms; duplicates dropped, order kept."""
    config_path = Path(config_path or DEFAULT_CONFIG)
    cfg = validate_as(ListenVocabularyConfig, read_yaml_mapping(config_path, "listen config"),
                      f"invalid listen config {config_path}")
    words = []
    if cfg.reason_config:
        reason = Path(cfg.reason_config)
        words += _departments(reason if reason.is_absolute() else REPO / reason)
    words += [p.strip() for p in cfg.places if p.strip()]
    if cfg.taxonomy:
        words += _taxonomy_terms(Path(shared_dir) / cfg.taxonomy, cfg.taxonomy_level)
    return DomainVocabulary(cfg.language, cfg.prompt, tuple(dict.fromkeys(words)), cfg.max_hotword_tokens)


def read_hotwords(artifact_dir: Path) -> dict[str, dict]:
    """{language: {"prompt", "hotwords", "max_tokens"}} of an artifact ({} when it has none)."""
    path = Path(artifact_dir) / HOTWORDS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"unreadable {path}: {exc}") from exc
    return {str(k): dict(v) for k, v in data.items()}


def fit_to_budget(words: list[str] | tuple[str, ...], count_tokens, max_tokens: int) -> str:
    """The longest prefix of `words` (space-separated) whose Whisper tokens fit `max_tokens`: Whisper
    would otherwise cut the hotwords in the middle of a word."""
    kept: list[str] = []
    for word in words:
        if count_tokens(" " + " ".join([*kept, word])) > max_tokens:
            break
        kept.append(word)
    return " ".join(kept)
