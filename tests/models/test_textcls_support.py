"""Shared helpers of the `reason` tests (no tests here): ONE default artifact per pytest process,
trained by the real bootstrap function (`training.textcls.train_default`), reused by
tests/models/test_textcls*.py and tests/training/test_textcls*.py."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

_EMBEDDING_CACHE: list[Path] = []
LABELLED = ("data", "text", "gov_messages_labelled.csv")
REPLIES = ("data", "text", "gov_messages_with_replies.csv")


@cache
def default_artifact(shared_dir: Path) -> Path:
    """The bootstrap artifact, trained once (the e5 cache under HUB_HOME makes reruns fast)."""
    from hub.settings import get_settings
    from training.textcls import train_default

    _EMBEDDING_CACHE.append(get_settings().cache_dir / "e5")

    root = Path(tempfile.mkdtemp(prefix="reason-default-"))
    atexit.register(shutil.rmtree, root, True)
    out = root / "artifact"
    out.mkdir()
    train_default(shared_dir, out)
    return out


def load_classifier(artifact: Path, data_dir: Path, **kwargs):
    from models.textcls import HotlineClassifier

    clf = HotlineClassifier(data_dir=data_dir, **kwargs)
    clf.load(artifact, "cpu")
    return clf


def register_champion(artifact: Path, name: str = "hotline-classifier") -> str:
    """Register `artifact` in the current HUB_HOME's MLflow as a version with alias champion."""
    from registry.store import MlflowStore

    store = MlflowStore.from_settings()
    version = store.register(name, artifact, metadata={"capability": "reason"}, description="test champion")
    store.set_alias(name, "champion", version, reason="test")
    return version


def seed_embedding_cache(home: Path) -> None:
    """Give a fresh HUB_HOME the e5 vectors the default artifact's training computed (saves ~1 min)."""
    target = home / "cache" / "e5"
    target.mkdir(parents=True, exist_ok=True)
    for source in _EMBEDDING_CACHE[:1]:
        for path in source.glob("e5-*.npz"):
            shutil.copy2(path, target / path.name)
