"""The on-disk format of a `reason` model version ("hotline-textcls/1").

    hub.json              capability, format, flat metadata, labels, classifier spec (+ temperature),
                          encoder identity (+ probe vector), case index spec
    classifier/           head files (see models.textcls.heads): the text-only head, used for every request
                          without a subject line (a hotline call transcript has none)
    classifier-subject/   optional (hub.json "subject_classifier"): the head that also reads the subject
                          line, used when a request has one; artifacts without it answer from text only
    cases/cases.faiss     faiss IndexFlatIP of the e5 vectors of the case corpus
    cases/cases.jsonl     the cases, one JSON object per line, in index order
    MLmodel, input_example.json   MLflow signature and input example (written by training)
    model_card.md, metrics.json   the evaluation that produced this version (written by training)

>>> write_artifact(out_dir, head=head, labels=labels, temperature=1.7, encoder=enc, cases=index, metadata={})
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.textcls.cases import CaseIndex
from models.textcls.encoder import E5Encoder
from models.textcls.heads import Head

CAPABILITY = "reason"
FORMAT = "hotline-textcls/1"


def write_artifact(out_dir: Path, *, head: Head, labels: Sequence[str], temperature: float, encoder: E5Encoder,
                   cases: CaseIndex, metadata: Mapping[str, Any], subject_head: Head | None = None,
                   subject_temperature: float = 1.0) -> dict:
    """Write a complete artifact into `out_dir` and return its hub.json content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    classifier = {**head.save(out_dir / "classifier"), "dir": "classifier", "temperature": float(temperature)}
    subject = None if subject_head is None else {
        **subject_head.save(out_dir / "classifier-subject"), "dir": "classifier-subject",
        "temperature": float(subject_temperature)}
    hub = {
        "capability": CAPABILITY,
        "format": FORMAT,
        "metadata": {k: v if isinstance(v, (int, float, bool)) else str(v) for k, v in metadata.items()},
        "labels": list(labels),
        "classifier": classifier,
        "encoder": {**asdict(encoder.spec), "fingerprint": encoder.spec.fingerprint, "probe": encoder.probe()},
        "cases": cases.save(out_dir / "cases"),
        **({"subject_classifier": subject} if subject else {}),
    }
    (out_dir / "hub.json").write_text(json.dumps(hub, ensure_ascii=False, indent=1), encoding="utf-8")
    return hub


def read_hub_json(artifact_dir: Path) -> dict:
    from hub.errors import ModelLoadError

    try:
        hub = json.loads((artifact_dir / "hub.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{artifact_dir} has no readable hub.json: {exc}") from exc
    if hub.get("capability") != CAPABILITY or hub.get("format") != FORMAT:
        raise ModelLoadError(f"{artifact_dir} holds {hub.get('capability')!r}/{hub.get('format')!r}, "
                             f"not a {CAPABILITY}/{FORMAT} model")
    for key in ("labels", "classifier", "encoder", "cases"):
        if key not in hub:
            raise ModelLoadError(f"{artifact_dir}/hub.json lacks {key!r}")
    return hub
