"""Runtime settings of `reason` from `configs/reason.yaml`: routing table, review thresholds, limits.

>>> cfg = ReasonConfig.load()
>>> cfg.department_for("城乡建设")
'市住房和城乡建设局'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hub.errors import InvalidInput
from hub.yamlconfig import read_yaml_mapping

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reason.yaml"


@dataclass(frozen=True)
class ReasonConfig:
    routing: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    default_department: str = "人工分派"
    needs_review_below: float = 0.55
    min_case_similarity: float = 0.0
    top_k: int = 3
    cases_k: int = 3
    max_k: int = 20
    max_text_chars: int = 4000
    max_request_chars: int = 1_000_000
    reply_excerpt_chars: int = 160

    def department_for(self, category: str) -> str:
        return self.routing.get(category, self.default_department)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> ReasonConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise InvalidInput(f"{source}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        routing = raw.get("routing") or {}
        if not isinstance(routing, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                    for k, v in routing.items()):
            raise InvalidInput(f"{source}: routing must map category names to non-empty department names")
        values = {k: v for k, v in raw.items() if k != "routing"}
        try:
            cfg = cls(routing=MappingProxyType(dict(routing)), **{
                k: type(getattr(cls, k))(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{source}: {exc}") from exc
        if not 0.0 <= cfg.needs_review_below <= 1.0:
            raise InvalidInput(f"{source}: needs_review_below must be within 0..1")
        if not -1.0 <= cfg.min_case_similarity <= 1.0:
            raise InvalidInput(f"{source}: min_case_similarity must be within -1..1")
        if not (1 <= cfg.top_k <= cfg.max_k and 0 <= cfg.cases_k <= cfg.max_k):
            raise InvalidInput(f"{source}: need 1 <= top_k <= max_k and 0 <= cases_k <= max_k")
        if not 1 <= cfg.max_text_chars <= cfg.max_request_chars:
            raise InvalidInput(f"{source}: need 1 <= max_text_chars <= max_request_chars")
        return cfg

    @classmethod
    def load(cls, path: Path | None = None) -> ReasonConfig:
        path = path or default_path()
        return cls.from_dict(read_yaml_mapping(path, "reason config"), str(path))


def default_path() -> Path:
    """`reason.yaml` beside the serving config HUB_CONFIG names, else the repository's copy."""
    from hub.settings import get_settings

    beside = get_settings().config.parent / "reason.yaml"
    return beside if beside.is_file() else REPO_CONFIG
