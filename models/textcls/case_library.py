"""One replica's similar-case index: the artifact's seed corpus plus the shared case journal.

Before each batch the library applies what other replicas appended. When another replica has
compacted the journal (a new file), the index is rebuilt from the seed and the new file in a
background thread, and the current index keeps answering until the new one is swapped in: a full
rebuild parses every journal line (~0.1 ms each on a 2-core box: ~2 s at 20k cases, ~20 s at the
default 200k), which would otherwise stall one batch per replica. Additions stay synchronous: the
caller's cases are on disk and in this replica's index when `add` returns, and the replica whose
addition crosses a retention limit compacts and rebuilds inline, so its answer counts the kept cases.

>>> library = CaseLibrary(seed_index, partial(CaseIndex.load, cases_dir), data_dir, retention, fp, embed)
>>> library.refresh(); library.index.search(vectors, k=3)
>>> library.add([case], vectors)   # (added, updated)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.textcls.cases import Case, CaseIndex
from models.textcls.config import CaseRetention
from models.textcls.journal import CaseJournal

log = logging.getLogger(__name__)


class CaseLibrary:
    def __init__(self, index: CaseIndex, seed: Callable[[], CaseIndex], directory: Path,
                 retention: CaseRetention, fingerprint: str, embed: Callable[[list[str]], np.ndarray]) -> None:
        """`index` is the seed corpus already loaded; `seed()` loads it again for a rebuild."""
        self._seed, self._directory, self._retention = seed, Path(directory), retention
        self._fingerprint, self._embed = fingerprint, embed
        self._lock = threading.Lock()  # one sync at a time on this replica (batches, additions, the swap)
        self._rebuild_guard = threading.Lock()
        self._rebuilder: threading.Thread | None = None
        self.journal = CaseJournal(self._directory, retention)
        self.index = index
        with self._lock:
            self.replayed = self._sync_locked()  # at start: the whole journal, inline

    def refresh(self) -> None:
        """Apply what other replicas appended; start a rebuild if they compacted the journal. A view
        past a retention limit compacts here too (an age cut in a hub that adds no cases)."""
        if self.journal.replaced():
            self._start_rebuild()
        elif self.journal.changed() or self.journal.due(time.time()):
            with self._lock:
                self._sync_locked()

    def add(self, cases: Sequence[Case], vectors: np.ndarray) -> tuple[int, int]:
        """Journal `cases` (fsynced) and apply them. Returns (added, updated) counted by id."""
        with self._lock:
            self._sync_locked()
            ids = {c.id for c in cases}
            existing = {i for i in ids if i in self.index.rows}
            self.journal.append(cases, vectors, self._fingerprint)
            # Apply through the journal, so our lines and any another replica appended meanwhile land
            # in the same order on every replica; an addition past a limit compacts here.
            self._sync_locked()
        return len(ids - existing), len(existing)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a background rebuild; True when none is running (tests, shutdown)."""
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join(timeout_s)
        return rebuilder is None or not rebuilder.is_alive()

    def _sync_locked(self) -> int:
        self.index, applied = self.journal.sync(self.index, self._fingerprint, self._embed, self._seed)
        if self.journal.due(time.time()) and self.journal.compact(time.time()) is not None:
            self.index, applied = self.journal.sync(self.index, self._fingerprint, self._embed, self._seed)
        return applied

    def _start_rebuild(self) -> None:
        with self._rebuild_guard:
            if self._rebuilder is not None and self._rebuilder.is_alive():
                return
            self._rebuilder = threading.Thread(target=self._rebuild, name="reason-case-rebuild", daemon=True)
            self._rebuilder.start()

    def _rebuild(self) -> None:
        """A fresh view of the new generation (what a replica starting now would build), then a swap."""
        try:
            journal = CaseJournal(self._directory, self._retention)
            index, applied = journal.sync(self._seed(), self._fingerprint, self._embed, self._seed)
        except Exception:  # a thread's error would vanish: log it; the next batch starts another try
            log.exception("reason: rebuilding the case index from the compacted journal failed")
            return
        with self._lock:
            if self.journal.replaced():  # not yet caught up inline by an addition meanwhile
                self.journal, self.index = journal, index
                log.info("reason: case index rebuilt from journal generation %s: %d cases (%d added at run time)",
                         journal.generation, len(index), applied)
