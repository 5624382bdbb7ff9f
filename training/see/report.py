"""What a `see` training run shows: a grid of validation predictions and the model card, both made
from the run's own numbers and images.

>>> prediction_grid(score.results, names, Path("grid.jpg"))
>>> Path("model_card.md").write_text(model_card(card))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from training.see.evaluate import DetScore, ImageResult

GRID_TILE_PX = 320
GRID_COLUMNS = 4
GRID_MIN_SCORE = 0.25  # the serving default: what a camera would act on


def prediction_grid(results: Sequence[ImageResult], names: Sequence[str], out: Path, *, tiles: int = 12) -> Path:
    """Up to `tiles` validation images: ground truth in green, predictions (score > 0.25) in red."""
    from PIL import Image, ImageDraw

    chosen = list(results)[:tiles]
    rows = max(1, -(-len(chosen) // GRID_COLUMNS))
    grid = Image.new("RGB", (GRID_COLUMNS * GRID_TILE_PX, rows * GRID_TILE_PX), (40, 40, 40))
    for i, r in enumerate(chosen):
        with Image.open(r.image) as img:
            tile = img.convert("RGB")
        scale = GRID_TILE_PX / max(tile.size)
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))))
        draw = ImageDraw.Draw(tile)
        for box in r.true_xyxy * scale:
            draw.rectangle(box.tolist(), outline=(0, 220, 0), width=2)
        keep = r.pred_score > GRID_MIN_SCORE
        for box, cls, score in zip(r.pred_xyxy[keep] * scale, r.pred_cls[keep], r.pred_score[keep], strict=True):
            draw.rectangle(box.tolist(), outline=(230, 30, 30), width=2)
            draw.text((box[0] + 2, box[1] + 1), f"{names[int(cls)]} {score:.2f}", fill=(255, 255, 0))
        grid.paste(tile, ((i % GRID_COLUMNS) * GRID_TILE_PX, (i // GRID_COLUMNS) * GRID_TILE_PX))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, quality=85)
    return out


@dataclass(frozen=True)
class CardFacts:
    name: str
    version: str | None
    base_ref: str
    data_yaml: str
    data_fingerprint: str
    names: tuple[str, ...]
    train_images: int
    val_images: int
    params: dict[str, str]
    device: str
    train_s: float
    epochs_run: int
    challenger: DetScore
    champion: DetScore | None
    champion_version: str | None
    decision: str


def _row(label: str, s: DetScore | None) -> str:
    if s is None:
        return f"| {label} | — | — | — | — |"
    return f"| {label} | {s.map50:.4f} | {s.map50_95:.4f} | {s.precision:.4f} | {s.recall:.4f} |"


def model_card(f: CardFacts) -> str:
    per_class = "\n".join(
        f"| {c} | {v['map50']:.4f} | {v['map50_95']:.4f} | {v['precision']:.4f} | {v['recall']:.4f} |"
        for c, v in f.challenger.per_class.items()
    )
    champion_label = f"champion v{f.champion_version}" if f.champion_version else "champion (none)"
    return f"""# Model card: {f.name}{f" version {f.version}" if f.version else ""} (`see`, YOLO detector)

Generated {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} by `hub train see`.

## What it is
- Fine-tune of `{f.base_ref}` with Ultralytics, exported to the hub's artifact (ONNX fp32, head cut
  before decode, free batch and image size) and scored the way serving runs it (onnxruntime).
- Classes: {", ".join(f.names)}.
- Trained on {f.device} for {f.epochs_run} epoch(s) in {f.train_s:.0f} s; parameters: {f.params}.

## Data
- `{f.data_yaml}`: {f.train_images} training images, {f.val_images} held-out validation images
  (val split sha256 `{f.data_fingerprint[:16]}…`). Check the dataset's licence before shipping weights
  trained on it.

## Held-out scores (same split for both)
| model | mAP50 | mAP50-95 | precision | recall |
|---|---|---|---|---|
{_row("this version", f.challenger)}
{_row(champion_label, f.champion)}

Per class (this version):

| class | mAP50 | mAP50-95 | precision | recall |
|---|---|---|---|---|
{per_class}

Gate (champion moves only on a strict gain in mAP50-95): {f.decision}

## Limits
- Scores are on {f.challenger.n} validation images ({f.challenger.boxes} boxes) from the scenes of this
  dataset; other viewpoints, weather or night scenes are not measured here.
- Precision and recall are at the confidence that maximises F1 on this split, not at the serving
  default of 0.25.
"""
