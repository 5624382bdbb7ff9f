"""Labelled text data for `reason` training: CSV (any columns) or THUCNews-style `title<TAB>label` files.

>>> data = load_labelled(Path("../shared/data/text/gov_messages_labelled.csv"))
>>> len(data), data.classes[:2]
(395, ('交通运输', '劳动和社会保障'))
>>> train_idx, test_idx = stratified_split(data.labels, 0.2, seed=0)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hub.errors import InvalidInput
from models.textcls.cases import Case


@dataclass(frozen=True)
class LabelledData:
    ids: tuple[str, ...]
    subjects: tuple[str, ...]
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    source: str
    sha256: str  # of the file as read: which data made a version
    # the file had a subject column with some non-empty value (otherwise `subjects` are the texts'
    # first 40 characters, good enough for case titles but no signal for a subject head)
    has_subjects: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def label_index(self) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[label] for label in self.labels], dtype=np.int64)

    def cases(self, rows: np.ndarray | None = None) -> list[Case]:
        rows = range(len(self)) if rows is None else rows
        return [Case(id=self.ids[i], subject=self.subjects[i], text=self.texts[i], category=self.labels[i],
                     source="labelled") for i in rows]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_labelled(path: Path, text_col: str = "text", label_col: str = "category", *,
                  id_col: str = "id", subject_col: str = "subject", max_rows: int | None = None,
                  seed: int = 0) -> LabelledData:
    """Rows with an empty text or label are dropped; duplicate ids get a `#n` suffix (the shipped
    file has one id twice, with two different labels). `max_rows` keeps a stratified-ish random
    sample (fixed seed), for exercising training on the 20,000 THUCNews titles quickly."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such data file: {path}", field="data")
    if path.suffix == ".txt":  # THUCNews: title<TAB>label-number, class names in *_classes.txt beside it
        frame = pd.read_csv(path, sep="\t", header=None, names=[text_col, label_col], dtype=str,
                            quoting=3, keep_default_na=False)
        names = sorted(path.parent.glob("*classes.txt"))
        if names:
            classes = names[0].read_text(encoding="utf-8").split()
            frame[label_col] = [classes[int(v)] if v.isdigit() and int(v) < len(classes) else v
                                for v in frame[label_col]]
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in (text_col, label_col):
        if col not in frame.columns:
            raise InvalidInput(f"{path} has no column {col!r} (columns: {list(frame.columns)})", field="data")
    frame = frame[(frame[text_col].str.strip() != "") & (frame[label_col].str.strip() != "")]
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    if frame.empty:
        raise InvalidInput(f"{path} has no labelled rows", field="data")
    ids = [str(v) for v in frame[id_col]] if id_col in frame.columns else [f"row{i}" for i in frame.index]
    seen: dict[str, int] = {}
    unique_ids = []
    for case_id in ids:
        seen[case_id] = seen.get(case_id, 0) + 1
        unique_ids.append(case_id if seen[case_id] == 1 else f"{case_id}#{seen[case_id]}")
    texts = [str(v) for v in frame[text_col]]
    has_subjects = bool(subject_col) and subject_col in frame.columns and any(
        str(v).strip() for v in frame[subject_col])
    subjects = ([str(v) for v in frame[subject_col]] if has_subjects else [t.strip()[:40] for t in texts])
    return LabelledData(tuple(unique_ids), tuple(subjects), tuple(texts),
                        tuple(str(v).strip() for v in frame[label_col]), str(path), _sha256(path), has_subjects)


def load_reply_cases(path: Path) -> list[Case]:
    """Past cases with the government's official reply (`id, subject, text, reply`)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"id", "subject", "text", "reply"} - set(frame.columns)
    if missing:
        raise InvalidInput(f"{path} lacks columns {sorted(missing)}", field="cases")
    return [Case(id=str(r.id), subject=r.subject, text=r.text, reply=r.reply, source="replies")
            for r in frame.itertuples() if r.text.strip()]


def stratified_split(labels: tuple[str, ...] | np.ndarray, heldout_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows), stratified by label, deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    train, test = train_test_split(rows, test_size=heldout_fraction, random_state=seed,
                                   stratify=np.asarray(labels, dtype=object))
    return np.sort(train), np.sort(test)


def check_trainable(data: LabelledData, folds: int, heldout_fraction: float) -> None:
    """Every class needs enough rows for a stratified held-out set and `folds`-fold CV."""
    counts = {c: data.labels.count(c) for c in data.classes}
    need = max(folds, int(np.ceil(1 / heldout_fraction)) + 1)
    small = {c: n for c, n in counts.items() if n < need}
    if len(counts) < 2:
        raise InvalidInput(f"{data.source}: need at least 2 categories, found {list(counts)}", field="data")
    if small:
        raise InvalidInput(f"{data.source}: categories with fewer than {need} examples: {small}", field="data")
