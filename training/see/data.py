"""YOLO-format detection datasets: the `DATA.yaml` Ultralytics reads, read the same way here.

A dataset YAML names a root (`path`), the `train` and `val` splits (a folder of images, a text file
listing images, or a list of either) and the class `names` (a list or an `{id: name}` map). A label
file sits where the image is with `images` -> `labels` in its path and a `.txt` suffix; each line is
`class cx cy w h` normalised to 0..1. An image without a label file has no objects.

>>> data = DetectionData.read(Path("../shared/data/detection/overhead-cars/data.yaml"))
>>> len(data.val), data.names
(37, ('car',))
>>> small = data.subset(Path("/tmp/tiny"), train=6, val=4)     # what CI trains on
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hub.errors import InvalidInput

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class DetectionData:
    yaml_path: Path
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...]

    @classmethod
    def read(cls, yaml_path: Path) -> DetectionData:
        yaml_path = Path(yaml_path).resolve()
        try:
            doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read dataset {yaml_path}: {exc}", field="data") from exc
        if not isinstance(doc, dict) or "names" not in doc or "train" not in doc or "val" not in doc:
            raise InvalidInput(f"{yaml_path} needs 'train', 'val' and 'names' (Ultralytics dataset YAML)", field="data")
        root = Path(doc.get("path") or ".")
        root = root if root.is_absolute() else (yaml_path.parent / root).resolve()
        names = doc["names"]
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
        data = cls(yaml_path, tuple(str(n) for n in names), _images(root, doc["train"]), _images(root, doc["val"]))
        if not data.names or not data.train or not data.val:
            raise InvalidInput(f"{yaml_path}: no class names, or an empty train/val split", field="data")
        return data

    def labels(self, image: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(class_id int64 [N], xyxy float32 [N, 4] in pixels) of one image."""
        path = label_path(image)
        if not path.is_file():
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        try:
            table = np.array([[float(v) for v in r[:5]] for r in rows], np.float64).reshape(-1, 5)
        except ValueError as exc:
            raise InvalidInput(f"malformed label file {path}: {exc}", field="data") from exc
        cls_id = table[:, 0].astype(np.int64)
        if ((cls_id < 0) | (cls_id >= len(self.names))).any():
            raise InvalidInput(f"{path} has a class id outside 0..{len(self.names) - 1}", field="data")
        cx, cy, w, h = table[:, 1] * width, table[:, 2] * height, table[:, 3] * width, table[:, 4] * height
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)
        return cls_id, xyxy

    def fingerprint(self) -> str:
        """sha256 over the val split's images and labels: two scores are comparable when equal."""
        digest = hashlib.sha256()
        for image in self.val:
            digest.update(image.name.encode())
            digest.update(image.read_bytes())
            label = label_path(image)
            digest.update(label.read_bytes() if label.is_file() else b"-")
        return digest.hexdigest()

    def for_ultralytics(self, out_dir: Path) -> Path:
        """A YAML listing exactly the images this dataset read, by absolute path, for `YOLO.train`.

        Ultralytics resolves a relative `path:` against its own datasets folder or the working
        directory, not against the YAML (`path: .` beside the images failed from any other folder);
        and training on the same files the gate scores keeps the two comparable."""
        return self.subset(out_dir, train=len(self.train), val=len(self.val)).yaml_path

    def subset(self, out_dir: Path, *, train: int, val: int) -> DetectionData:
        """A YAML over the first `train`/`val` images (list files; the images are not copied)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train.txt").write_text("".join(f"{p}\n" for p in self.train[:train]))
        (out_dir / "val.txt").write_text("".join(f"{p}\n" for p in self.val[:val]))
        doc = {"path": str(out_dir), "train": "train.txt", "val": "val.txt", "names": dict(enumerate(self.names))}
        (out_dir / "data.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        return DetectionData.read(out_dir / "data.yaml")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `/images/` of the path becomes `/labels/`, suffix `.txt`."""
    text = str(image)
    sep = "/images/"
    if sep in text:
        head, tail = text.rsplit(sep, 1)
        text = f"{head}/labels/{tail}"
    return Path(text).with_suffix(".txt")


def _images(root: Path, spec) -> tuple[Path, ...]:
    entries = spec if isinstance(spec, list) else [spec]
    out: list[Path] = []
    for entry in entries:
        path = Path(str(entry))
        path = path if path.is_absolute() else root / path
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix == ".txt" and path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    out.append(p if p.is_absolute() else (path.parent / p).resolve())
        elif path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            out.append(path)
        else:
            raise InvalidInput(f"dataset split {path} is not a folder, list file or image", field="data")
    return tuple(out)
