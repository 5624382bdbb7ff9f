"""The journal of cases added at run time, shared by every `reason` replica, and its retention.

`<data_dir>/reason/added_cases.jsonl`: one JSON line per added case (its vector, the encoder's
fingerprint and `added_wall`). Replicas append under a lock, fsync before answering, and tail the
file by byte offset into their similar-case index.

Retention (`case_retention:` of configs/reason.yaml) rewrites the journal: a compaction keeps the
last line of each id, drops lines older than `max_age_days` and, past `max_cases` or `max_mb`, the
oldest lines down to `KEEP_FRACTION` of both limits (so the next compaction is far off, not on the
next append). The rewritten file starts with a header line carrying a generation number and
replaces the old one atomically (temp file, fsync, rename, directory fsync); a crash leaves either
journal whole. A replica whose file changed generation (or inode) rebuilds its index from the seed
corpus plus the new file (models/textcls/case_library.py does that in the background), so it never
skips or applies a case twice; the seed corpus (the model
artifact's cases) is never in the journal and never pruned. Appends and compactions take one lock
file beside the journal, so an append can never land in a file that is being replaced.

>>> journal = CaseJournal(Path(".hub/data/reason"), CaseRetention(max_cases=1000))
>>> journal.append([case], vectors, "3f2a...")
>>> index, applied = journal.sync(index, "3f2a...", encoder.encode, seed=load_seed)
>>> journal.due(time.time()) and journal.compact(time.time())
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.textcls.cases import Case, CaseIndex
from models.textcls.config import CaseRetention

log = logging.getLogger(__name__)
JOURNAL_NAME = "added_cases.jsonl"
LOCK_NAME = "added_cases.lock"
TEMP_NAME = "added_cases.jsonl.compacting"
HEADER_KEY = "case_journal"
DAY_S = 86_400.0
MB = 1024 * 1024
# An age compaction waits until the oldest line is this far past the limit (1% of max_age_days, at
# least a day): a full window is rewritten every 18 days with the default five years, not daily.
AGE_SLACK_FRACTION, MIN_AGE_SLACK_S = 0.01, DAY_S
RETRY_GAP_S = 60.0  # a compaction that found nothing to drop is not tried again for this long
KEEP_FRACTION = 0.9  # a size cut keeps this much of max_cases and max_mb: appends do not each compact


@dataclass(frozen=True)
class JournalEntry:
    case: Case
    encoder: str  # fingerprint of the encoder that made `vector`
    vector: np.ndarray
    added_wall: float | None  # None: written before the journal dated its lines


@dataclass(frozen=True)
class JournalRead:
    entries: list[JournalEntry]
    reset: bool  # the file is a new generation (or was replaced or removed): rebuild from the seed


@dataclass(frozen=True)
class Compaction:
    generation: int
    kept: int
    dropped: int
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class LineInfo:
    case_id: str | None  # None: a damaged line
    wall: float  # when the case was added (or last updated)
    nbytes: int  # newline included
    dated: bool = True  # False: the line had no `added_wall`; `wall` is the journal's last write


@dataclass(frozen=True)
class KeepPlan:
    keep: list[int]  # indexes of the lines kept, in journal order
    dropped: int  # lines not kept: older duplicates of an id, damaged, too old, over a size limit


def plan_keep(lines: Sequence[LineInfo], retention: CaseRetention, now_wall: float) -> KeepPlan:
    """Which journal lines a compaction keeps: the last line of each id (what every replica has in
    its index), younger than `max_age_days`; past `max_cases` or `max_mb` the oldest go until both
    are under `KEEP_FRACTION` of their limit."""
    last: dict[str, int] = {}
    for i, info in enumerate(lines):
        if info.case_id is not None:
            last[info.case_id] = i
    cutoff = now_wall - retention.max_age_days * DAY_S
    keep = [i for i in sorted(last.values()) if lines[i].wall >= cutoff]
    count, size = len(keep), sum(lines[i].nbytes for i in keep)
    if count > retention.max_cases or size > retention.max_mb * MB:
        max_count = max(1, int(retention.max_cases * KEEP_FRACTION))  # max_cases=1 keeps one, not none
        max_bytes = retention.max_mb * MB * KEEP_FRACTION
        cut = 0
        while cut < count and (count - cut > max_count or size > max_bytes):
            size -= lines[keep[cut]].nbytes
            cut += 1
        keep = keep[cut:]
    return KeepPlan(keep, len(lines) - len(keep))


def _pack(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _header(data: bytes) -> tuple[int, int]:
    """(generation, bytes of the header line). A journal without a header is generation 0."""
    end = data.find(b"\n")
    if end < 0:
        return 0, 0
    try:
        raw = json.loads(data[:end])
    except ValueError:
        return 0, 0
    if isinstance(raw, dict) and HEADER_KEY in raw:
        return int(raw.get("generation", 0)), end + 1
    return 0, 0


def _entry(line: bytes) -> JournalEntry | None:
    try:
        raw = json.loads(line)
        vector = _unpack(raw.pop("vector"))
        fingerprint = raw.pop("encoder")
        wall = raw.pop("added_wall", None)
        return JournalEntry(Case(**raw), fingerprint, vector, None if wall is None else float(wall))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # a damaged line loses one case, not the journal


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename / new name itself survives a power cut
    finally:
        os.close(fd)


class CaseJournal:
    """Append, tail and compact `<directory>/added_cases.jsonl` (see the module docstring)."""

    def __init__(self, directory: Path, retention: CaseRetention | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / JOURNAL_NAME
        self.retention = retention or CaseRetention()
        self._reset_view()
        self._quiet_until_wall = 0.0

    def _reset_view(self) -> None:
        self.generation: int | None = None
        self.inode: int | None = None
        self.offset = 0  # bytes of the journal already applied by this process (header included)
        self.body_start = 0  # bytes of the header line
        self.lines = 0  # complete lines applied from this generation (duplicates and damaged ones too)
        self.oldest_wall: float | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The lock of appends and compactions: a file that is never replaced, unlike the journal."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_NAME, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ---- writing --------------------------------------------------------------------------------
    def append(self, cases: Sequence[Case], vectors: np.ndarray, fingerprint: str,
               now_wall: float | None = None) -> None:
        wall = round(time.time() if now_wall is None else now_wall, 3)
        lines = "".join(json.dumps({**asdict(c), "encoder": fingerprint, "vector": _pack(v), "added_wall": wall},
                                   ensure_ascii=False) + "\n" for c, v in zip(cases, vectors, strict=True))
        with self._locked():  # replicas append whole lines, never interleaved, never into a replaced file
            created = not self.path.exists()
            with open(self.path, "ab") as fh:
                fh.write(lines.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())  # a case acknowledged to the caller is a case on disk
            if created:
                _fsync_dir(self.directory)

    # ---- reading --------------------------------------------------------------------------------
    def changed(self) -> bool:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self.inode is not None
        return st.st_ino != self.inode or st.st_size != self.offset

    def replaced(self) -> bool:
        """The file is no longer the one this view tails: compacted (renamed over) or removed. (A new
        file that got the old inode number is caught by its generation in `read_new`.)"""
        if self.inode is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return True
        return st.st_ino != self.inode or st.st_size < self.offset

    def read_new(self) -> JournalRead:
        """Complete lines appended since the last call; `reset` when the file is another generation."""
        try:
            with open(self.path, "rb") as fh:  # one descriptor: header and body of the same file
                st = os.fstat(fh.fileno())
                generation, start = _header(fh.readline())
                reset = self.inode is not None and (st.st_ino != self.inode or generation != self.generation
                                                    or st.st_size < self.offset)
                if reset or self.inode is None:
                    self._reset_view()
                    self.generation, self.inode, self.offset, self.body_start = generation, st.st_ino, start, start
                fh.seek(self.offset)
                data = fh.read()  # only what this replica has not applied yet
        except FileNotFoundError:
            reset = self.inode is not None  # removed by hand: back to the seed corpus
            self._reset_view()
            return JournalRead([], reset)
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self.offset += end
        return JournalRead(self._parse(data[:end]), reset)

    def _parse(self, data: bytes) -> list[JournalEntry]:
        entries = []
        for line in data.splitlines():
            if not line.strip():
                continue
            self.lines += 1
            entry = _entry(line)
            if entry is None:
                continue
            entries.append(entry)
            if entry.added_wall is not None and (self.oldest_wall is None or entry.added_wall < self.oldest_wall):
                self.oldest_wall = entry.added_wall
        return entries

    def sync(self, index: CaseIndex, fingerprint: str, embed: Callable[[list[str]], np.ndarray],
             seed: Callable[[], CaseIndex]) -> tuple[CaseIndex, int]:
        """`index` with the new lines applied, or a new index from `seed()` plus the whole journal when
        it is a new generation. Lines from another encoder are embedded again. Returns (index, applied)."""
        read = self.read_new()
        if read.reset:
            index = seed()
        entries = read.entries
        if not entries:
            return index, 0
        vectors = np.zeros((len(entries), index.dim), np.float32)
        stale = []
        for i, e in enumerate(entries):
            if e.encoder == fingerprint and e.vector.shape == (index.dim,):
                vectors[i] = e.vector
            else:
                stale.append(i)
        if stale:
            vectors[stale] = embed([entries[i].case.text for i in stale])
        index.upsert([e.case for e in entries], vectors)
        return index, len(entries)

    # ---- retention ------------------------------------------------------------------------------
    def due(self, now_wall: float) -> bool:
        """Whether this replica's view of the journal is past a limit (cheap: no I/O)."""
        if now_wall < self._quiet_until_wall:
            return False
        lim = self.retention
        max_age_s = lim.max_age_days * DAY_S
        slack_s = max(MIN_AGE_SLACK_S, max_age_s * AGE_SLACK_FRACTION)
        too_old = self.oldest_wall is not None and self.oldest_wall < now_wall - max_age_s - slack_s
        return too_old or self.lines > lim.max_cases or self.offset - self.body_start > lim.max_mb * MB

    def compact(self, now_wall: float) -> Compaction | None:
        """Rewrite the journal with the lines inside the limits; None when none would go."""
        with self._locked():
            try:
                data = self.path.read_bytes()
                undated_wall = self.path.stat().st_mtime  # no line is newer than the last write
            except FileNotFoundError:
                return None
            generation, start = _header(data)
            body = data[start:data.rfind(b"\n") + 1]  # a torn last line was never acknowledged
            lines = [line for line in body.splitlines() if line.strip()]
            infos = [_line_info(line, undated_wall) for line in lines]
            plan = plan_keep(infos, self.retention, now_wall)
            if plan.dropped == 0:
                self._quiet_until_wall = now_wall + RETRY_GAP_S
                return None
            size = self._rewrite(generation + 1, lines, infos, plan, now_wall)
        log.info("reason: case journal compacted to generation %d: kept %d cases, dropped %d (%d -> %d bytes)",
                 generation + 1, len(plan.keep), plan.dropped, len(data), size)
        return Compaction(generation + 1, len(plan.keep), plan.dropped, len(data), size)

    def _rewrite(self, generation: int, lines: list[bytes], infos: list[LineInfo], plan: KeepPlan,
                 now_wall: float) -> int:
        header = {HEADER_KEY: 1, "generation": generation, "compacted_wall": round(now_wall, 3),
                  "kept": len(plan.keep), "dropped": plan.dropped}
        temp = self.directory / TEMP_NAME
        with open(temp, "wb") as fh:  # "wb": a temp file left by a crashed compaction is overwritten
            fh.write(json.dumps(header).encode("utf-8") + b"\n")
            for i in plan.keep:
                fh.write(_dated(lines[i], infos[i]) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
        os.replace(temp, self.path)
        _fsync_dir(self.directory)
        return size


def _line_info(line: bytes, undated_wall: float) -> LineInfo:
    """Id, date and size of one line; a damaged line has no id (always dropped)."""
    try:
        raw = json.loads(line)
        case_id = str(raw["id"])
        wall = raw.get("added_wall")
    except (ValueError, TypeError, KeyError):
        return LineInfo(None, undated_wall, len(line) + 1, dated=False)
    if wall is None:
        return LineInfo(case_id, undated_wall, len(line) + 1, dated=False)
    return LineInfo(case_id, float(wall), len(line) + 1)


def _dated(line: bytes, info: LineInfo) -> bytes:
    """The line as kept: an undated one gets the date it was judged by, so it ages from now on."""
    if info.dated:
        return line
    raw = json.loads(line)
    raw["added_wall"] = round(info.wall, 3)
    return json.dumps(raw, ensure_ascii=False).encode("utf-8")
