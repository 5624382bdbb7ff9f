"""Reviewed events -> a YOLO dataset that `hub train see` takes (`hub events export --reviewed --format yolo`).

What each verdict becomes, and why:
- **confirmed** -> a training image (the event's frame WITHOUT the drawn box) labelled with the
  event's box and class. The operator saw that box and said it is right.
- **rejected** -> NOT a hard negative. A rejection says the alarm was wrong, not that the frame
  holds no objects: the usual false alarm on a street is a real car that the rule should not have
  flagged (loading bay, moving slowly), or a box around the wrong thing next to real cars. An empty
  label file for that frame would teach the detector that every car in it is background. So a
  rejected event goes to `relabel/`: its frame and the rejected box as a proposal
  (`relabel/proposals.jsonl`, with the note and the model version), for someone to label properly
  (then add it to the images/labels folders) or to drop.

Layout: `data.yaml`, `images/{train,val}/<event_id>.jpg`, `labels/{train,val}/<event_id>.txt`,
`relabel/images/`, `relabel/proposals.jsonl`, `manifest.json`. The val split takes every event whose
id hashes into the last `val_percent` (stable across exports); with fewer than two confirmed
events the single image serves as both (enough to run, not to measure).

>>> summary = export_yolo(events, fetch_frame, Path("reviewed/"))
>>> summary.train, summary.val, summary.relabel
(14, 3, 5)
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from hub.errors import HubError, InvalidInput


@dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    names: tuple[str, ...]
    train: int
    val: int
    relabel: int
    skipped: dict[str, str] = field(default_factory=dict)  # event_id -> why

    def to_dict(self) -> dict:
        return {**asdict(self), "out_dir": str(self.out_dir)}


def _is_val(event_id: str, val_percent: int) -> bool:
    return int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) % 100 >= 100 - val_percent


def _label_line(class_id: int, bbox: Sequence[float], width: int, height: int) -> str:
    x1, y1, x2, y2 = (max(0.0, min(float(v), lim)) for v, lim in zip(bbox, (width, height, width, height), strict=True))
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def export_yolo(events: Sequence[dict], fetch_frame: Callable[[str], bytes], out_dir: Path, *,
                names: Sequence[str] | None = None, val_percent: int = 20) -> ExportSummary:
    """Write the dataset (see module doc). `events`: event dicts with `review` (from `/v1/reviews`);
    `fetch_frame(event_id)` returns the clean frame JPEG (raises HubError when there is none)."""
    from PIL import Image

    out_dir = Path(out_dir)
    confirmed = [e for e in events if (e.get("review") or {}).get("verdict") == "confirmed"]
    rejected = [e for e in events if (e.get("review") or {}).get("verdict") == "rejected"]
    classes = tuple(names) if names else tuple(sorted({e["class_name"] for e in confirmed if e.get("class_name")}))
    if not confirmed or not classes:
        raise InvalidInput("no confirmed events with a class to export: confirm some events first", field="reviewed")
    skipped: dict[str, str] = {}
    written: dict[str, list[str]] = {"train": [], "val": []}
    for e in confirmed:
        if e["class_name"] not in classes:
            skipped[e["event_id"]] = f"class {e['class_name']!r} is not in --names"
            continue
        try:
            jpeg = fetch_frame(e["event_id"])
        except HubError as exc:
            skipped[e["event_id"]] = f"no frame: {exc}"
            continue
        width, height = Image.open(io.BytesIO(jpeg)).size
        split = "val" if _is_val(e["event_id"], val_percent) else "train"
        _write(out_dir, split, e["event_id"], jpeg, _label_line(classes.index(e["class_name"]), e["bbox"], width, height))
        written[split].append(e["event_id"])
    if not written["train"] and not written["val"]:
        raise InvalidInput(f"none of the confirmed events has a frame to export ({len(skipped)} skipped)",
                           field="reviewed")
    for missing, source in (("val", "train"), ("train", "val")):
        if not written[missing]:  # Ultralytics needs both splits: reuse one image (see module doc)
            event_id = written[source][-1]
            for kind in ("images", "labels"):
                suffix = ".jpg" if kind == "images" else ".txt"
                src = out_dir / kind / source / f"{event_id}{suffix}"
                (out_dir / kind / missing).mkdir(parents=True, exist_ok=True)
                (out_dir / kind / missing / src.name).write_bytes(src.read_bytes())
            written[missing].append(event_id)
    relabel = _write_relabel(out_dir, rejected, fetch_frame, skipped)
    # absolute: Ultralytics resolves a relative `path` against its working directory, not this file
    doc = {"path": str(out_dir.resolve()), "train": "images/train", "val": "images/val",
           "names": dict(enumerate(classes))}
    (out_dir / "data.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    summary = ExportSummary(out_dir, classes, len(written["train"]), len(written["val"]), relabel, skipped)
    (out_dir / "manifest.json").write_text(json.dumps({**summary.to_dict(), "splits": written}, indent=2))
    return summary


def _write(out_dir: Path, split: str, event_id: str, jpeg: bytes, label: str) -> None:
    for kind, name, data in (("images", f"{event_id}.jpg", jpeg), ("labels", f"{event_id}.txt", label.encode())):
        folder = out_dir / kind / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def _write_relabel(out_dir: Path, rejected: Sequence[dict], fetch_frame, skipped: dict[str, str]) -> int:
    folder = out_dir / "relabel" / "images"
    lines = []
    for e in rejected:
        try:
            jpeg = fetch_frame(e["event_id"])
        except HubError as exc:
            skipped[e["event_id"]] = f"no frame: {exc}"
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{e['event_id']}.jpg").write_bytes(jpeg)
        lines.append(json.dumps({"event_id": e["event_id"], "image": f"images/{e['event_id']}.jpg",
                                 "rejected_box": e["bbox"], "class_name": e.get("class_name"),
                                 "note": e["review"].get("note"), "model": e.get("model"),
                                 "camera_id": e.get("camera_id"), "rule": e.get("rule")}, ensure_ascii=False))
    if lines:
        (out_dir / "relabel" / "proposals.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
