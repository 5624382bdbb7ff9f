"""Similar-case retrieval: a faiss inner-product index over e5 vectors of past cases.

The artifact carries the index of its case corpus (`cases/cases.faiss` + `cases/cases.jsonl`).
Cases added at run time (`POST /v1/reason/cases`) go to a journal under the hub's data dir
(models/textcls/journal.py, with its retention), which every replica replays into this index.

>>> index = CaseIndex.load(artifact_dir / "cases")
>>> index.search(vectors, k=3)[0][0]
(Case(id='2549', subject='A2区景蓉华苑物业管理有问题', ...), 0.31)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hub.errors import ModelLoadError


@dataclass(frozen=True)
class Case:
    id: str
    subject: str
    text: str
    reply: str = ""
    category: str | None = None
    source: str = "labelled"  # "replies" | "labelled" | "added"


class CaseIndex:
    """Cases and their vectors behind a faiss `IndexFlatIP` (exact cosine on normalised vectors).

    With a `center` (the corpus mean), vectors are centred and re-normalised before indexing and
    search: e5 puts every Chinese text within ~0.8-0.95 cosine of every other, and a few generic
    messages come out as everyone's neighbour; centring halves that hubness and ranks better
    (top-3 same-category rate 0.643 -> 0.659 leave-one-out on the labelled messages).
    Vectors in and out of this class are the encoder's raw vectors.
    """

    def __init__(self, cases: Sequence[Case], vectors: np.ndarray, center: np.ndarray | None = None,
                 *, prepared: bool = False) -> None:
        import faiss

        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(cases), -1)
        if not prepared:
            vectors = self.prepare(vectors)
        self.cases = list(cases)
        self.rows = {c.id: i for i, c in enumerate(self.cases)}
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        if len(cases):
            self.index.add(vectors)
        self._lock = threading.Lock()  # add_cases runs beside predict on a replica

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def dim(self) -> int:
        return self.index.d

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.center is None:
            return np.ascontiguousarray(vectors)
        centred = vectors - self.center
        return np.ascontiguousarray(centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-6))

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[Case, float]]]:
        if k <= 0 or not len(self.cases):
            return [[] for _ in range(len(vectors))]
        with self._lock:
            scores, rows = self.index.search(self.prepare(vectors), min(k, len(self.cases)))
            cases = self.cases
        return [[(cases[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
                for srow, rrow in zip(scores, rows, strict=True)]

    def upsert(self, cases: Sequence[Case], vectors: np.ndarray) -> tuple[int, int]:
        """Add new ids, replace existing ones. Returns (added, updated)."""
        vectors = self.prepare(vectors)
        with self._lock:
            fresh = [i for i, c in enumerate(cases) if c.id not in self.rows]
            replaced = [i for i, c in enumerate(cases) if c.id in self.rows]
            if replaced:  # a flat index cannot overwrite rows in place: rebuild it (rare)
                import faiss

                all_vectors = self.index.reconstruct_n(0, self.index.ntotal)
                for i in replaced:
                    row = self.rows[cases[i].id]
                    self.cases[row] = cases[i]
                    all_vectors[row] = vectors[i]
                index = faiss.IndexFlatIP(self.index.d)
                index.add(all_vectors)
                self.index = index
            seen: dict[str, int] = {}
            for i in fresh:  # the same new id twice in one request: the last one wins
                seen[cases[i].id] = i
            for case_id, i in seen.items():
                self.rows[case_id] = len(self.cases)
                self.cases.append(cases[i])
            if seen:
                self.index.add(vectors[list(seen.values())])
        return len(seen), len(replaced)

    def save(self, directory: Path) -> dict:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "cases.faiss"))
        if self.center is not None:
            np.save(directory / "center.npy", self.center)
        with open(directory / "cases.jsonl", "w", encoding="utf-8") as fh:
            for case in self.cases:
                fh.write(json.dumps(asdict(case), ensure_ascii=False) + "\n")
        return {"count": len(self.cases), "index": "cases/cases.faiss", "records": "cases/cases.jsonl",
                "metric": "inner_product", "faiss_type": "IndexFlatIP",
                "centered": self.center is not None}

    @classmethod
    def load(cls, directory: Path) -> CaseIndex:
        import faiss

        try:
            index = faiss.read_index(str(directory / "cases.faiss"))
            center = np.load(directory / "center.npy") if (directory / "center.npy").is_file() else None
            cases = [Case(**json.loads(line)) for line in
                     (directory / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, RuntimeError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the case index in {directory}: {exc}") from exc
        if index.ntotal != len(cases):
            raise ModelLoadError(f"case index in {directory} has {index.ntotal} vectors for {len(cases)} cases")
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        return cls(cases, vectors, center, prepared=True)
