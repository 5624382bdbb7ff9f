"""`python -m training.ocr_synth --out DIR`: write synthetic certificates and their true fields."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.ocr_synth import generate


def main() -> None:
    parser = argparse.ArgumentParser(description="Render synthetic certificates with their true fields.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for doc_type in ("business_licence", "id_card"):
        for i, doc in enumerate(generate(doc_type, args.count, args.seed)):
            stem = f"{doc_type}_{i // 2:03d}_{doc.side}" if doc.side else f"{doc_type}_{i:03d}"
            (args.out / f"{stem}.jpg").write_bytes(doc.image)
            (args.out / f"{stem}.json").write_text(
                json.dumps(doc.fields, ensure_ascii=False, indent=1), encoding="utf-8"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
