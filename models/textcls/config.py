"""Runtime settings of `reason` from `configs/reason.yaml`: routing table, review thresholds, limits.

>>> cfg = ReasonConfig.load()
>>> cfg.department_for("城乡建设")
'市住房和城乡建设局'
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from hub.contract import WireModel, validate_as
from hub.errors import InvalidInput
from hub.yamlconfig import read_yaml_mapping

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reason.yaml"


class CaseRetention(WireModel):
    """`case_retention:` limits of the run-time case journal (models/textcls/journal.py).

    Past cases are what similar-case search is for: a three-year-old answer about the same flooded
    underpass is still the best template, so these keep years, not the 30 days of camera events.
    Five years is about how long replies stay current (policies and departments change); 200k cases
    is ~2 years of a busy city hotline closing 300 cases a day and costs a replica ~300 MB of vectors
    (384 float32 each) plus the texts; at ~3.5 KB a journal line (vector 2 KB as base64, text, reply)
    that is ~700 MB on disk, so `max_mb` binds first only when texts run long. The seed corpus of the
    model artifact is never pruned.
    """

    model_config = ConfigDict(frozen=True)

    max_age_days: float = Field(1825.0, gt=0)  # cases added (or last updated) longer ago go
    max_cases: int = Field(200_000, ge=1)  # past it the oldest go, down to 90% (see journal.KEEP_FRACTION)
    max_mb: float = Field(1024.0, gt=0)  # journal file size; past it the oldest go, down to 90%


class ReasonConfig(WireModel):
    """`configs/reason.yaml`; unknown keys and out-of-range values are refused with the key named."""

    model_config = ConfigDict(frozen=True)

    routing: dict[str, Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = {}
    default_department: str = "人工分派"
    needs_review_below: float = Field(0.55, ge=0.0, le=1.0)
    min_case_similarity: float = Field(0.0, ge=-1.0, le=1.0)
    top_k: int = Field(3, ge=1)
    cases_k: int = Field(3, ge=0)
    max_k: int = Field(20, ge=1)
    max_text_chars: int = Field(4000, ge=1)
    max_request_chars: int = Field(1_000_000, ge=1)
    reply_excerpt_chars: int = Field(160, ge=0)
    case_retention: CaseRetention = CaseRetention()

    @model_validator(mode="after")
    def _limits_agree(self) -> ReasonConfig:
        if not (self.top_k <= self.max_k and self.cases_k <= self.max_k):
            raise ValueError("need top_k <= max_k and cases_k <= max_k")
        if self.max_text_chars > self.max_request_chars:
            raise ValueError("need max_text_chars <= max_request_chars")
        return self

    def department_for(self, category: str) -> str:
        return self.routing.get(category, self.default_department)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> ReasonConfig:
        unknown = set(raw) - set(cls.model_fields)
        if unknown:  # all of them at once, with the known ones: a typo is found in one go
            raise InvalidInput(f"{source}: unknown keys {sorted(unknown)} (known: {sorted(cls.model_fields)})")
        return validate_as(cls, raw, source)

    @classmethod
    def load(cls, path: Path | None = None) -> ReasonConfig:
        path = path or default_path()
        return cls.from_dict(read_yaml_mapping(path, "reason config"), str(path))


def default_path() -> Path:
    """`reason.yaml` beside the serving config HUB_CONFIG names, else the repository's copy."""
    from hub.settings import get_settings

    beside = get_settings().config.parent / "reason.yaml"
    return beside if beside.is_file() else REPO_CONFIG
