"""Storage that survives a full disk, ages out, and belongs to one hub — through the stream manager's
core in-process (no Ray). The "disk" is the event database's hard quota: SQLite refuses to grow
past it with the same "database or disk is full" error a full disk gives."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from hub.errors import Conflict
from pipelines.durability import HomeLock, write_json_atomic
from pipelines.events import EventStore
from pipelines.retention import Retention, RetentionSpec
from pipelines.rules.base import Event
from pipelines.sources import Frame
from pipelines.spill import SpillingRecorder
from serving.streams import StreamManagerCore

HOOK = "http://127.0.0.1:9/hook"  # nothing listens: deliveries just stay queued
DAY_S = 86_400.0


def event(i: int, phase: str = "started", camera: str = "cam1") -> Event:
    return Event(event_id=f"e{i:04d}", camera_id=camera, rule="illegal_parking", zone_id="kerb", track_id=i,
                 started_ts=float(i), ended_ts=None if phase == "started" else i + 30.0,
                 bbox=(10.0, 20.0, 90.0, 80.0), score=0.8, class_name="car", phase=phase, fired_ts=i + 1.0)


def frame(i: int) -> Frame:
    image = np.full((120, 160, 3), i % 250, np.uint8)
    return Frame("cam1", i, float(i), image)


@pytest.fixture
def core(hub_home, tmp_path):
    core = StreamManagerCore({"retention": {"hard_quota": False}}, data_dir=tmp_path / "data")
    yield core
    core.close()


def test_full_disk_holds_events_in_memory_reports_it_and_loses_none(core):
    store = core.store
    store.set_max_db_bytes(store.db_bytes())  # "the disk is full" from now on
    sequence = [event(i) for i in range(120)] + [event(i, "ended") for i in range(0, 120, 2)]
    emitted, spilled = [], 0
    for i, ev in enumerate(sequence):
        stored = core.sink.emit(ev, frame(i) if ev.phase == "started" else None)
        emitted.append((ev.event_id, ev.phase))
        spilled += stored is None
    assert spilled > 100  # the few free pages fill up after some dozens of rows; the rest wait in memory

    health = core.health()
    assert health["healthy"] is False
    assert any("disk is full" in p and f"{spilled} events held in memory" in p for p in health["problems"])
    assert core.status()["storage"]["spill"]["spilled"] == spilled

    store.set_max_db_bytes(None)  # space returns
    core.upkeep.run_once()
    assert core.health() == {"healthy": True, "problems": []}
    feed = [(e.event.event_id, e.event.phase) for e in store.feed(0, limit=1000)]
    assert feed == emitted  # every event once, in the order the rules fired them
    assert store.delivery_counts()["pending"] == 0  # no webhooks configured on this core
    started = [e for e, p in emitted if p == "started"]
    assert all(store.snapshot_bytes(e)[:2] == b"\xff\xd8" for e in started)  # snapshots kept as JPEG


def test_spill_is_bounded_and_counts_what_it_lost(tmp_path):
    store = EventStore.open(tmp_path)
    store.set_max_db_bytes(store.db_bytes())
    recorder = SpillingRecorder(store, max_items=5, retry_initial_s=60)
    results = [recorder.record(event(i), webhooks=[HOOK]) for i in range(100)]
    health = recorder.health()
    assert health["spilled"] == 5 and health["lost"] > 0
    assert health["lost"] + health["spilled"] + sum(r is not None for r in results) == 100
    store.set_max_db_bytes(None)
    assert recorder.close() == 0
    assert [e.event.event_id for e in store.feed(0)][-5:] == [f"e{i:04d}" for i in range(95, 100)]  # newest kept
    store.close()


@pytest.mark.parametrize("store_name,age_days,expect_gone", [
    ("events", 31, True), ("events", 29, False), ("snapshots", 31, True), ("deliveries", 31, True),
])
def test_retention_by_age(tmp_path, store_name, age_days, expect_gone):
    store = EventStore.open(tmp_path)
    now = time.time()
    then = now - age_days * DAY_S
    store.record(event(1), np.zeros((64, 64, 3), np.uint8), webhooks=[HOOK], now_wall=then)
    store.record(event(1, "ended"), webhooks=[HOOK], now_wall=then)
    store.execute("UPDATE deliveries SET delivered_wall = ?", (then,))
    store.record(event(2), np.zeros((64, 64, 3), np.uint8), now_wall=now)  # recent and still open: kept
    report = Retention(store, RetentionSpec()).run(now_wall=now)
    gone = report[store_name] > 0
    assert gone == expect_gone
    assert store.get("e0002").snapshot is not None
    if expect_gone and store_name == "events":
        assert [e.event.event_id for e in store.list_events()] == ["e0002"]
        assert store.query("SELECT COUNT(*) FROM deliveries")[0][0] == 0
    store.close()


def test_retention_by_size_drops_the_oldest_first_and_keeps_queued_webhooks(tmp_path):
    store = EventStore.open(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(12):  # noisy frames: ~100 KB JPEGs
        store.record(event(i), rng.integers(0, 255, (360, 480, 3), dtype=np.uint8), now_wall=1000.0 + i)
        store.record(event(i, "ended"), webhooks=[HOOK] if i == 0 else (), now_wall=1000.0 + i)
    per_snapshot = len(store.snapshot_bytes("e0005"))
    spec = RetentionSpec(snapshots={"max_age_days": 3650, "max_mb": 4 * per_snapshot / 1e6},
                         events={"max_age_days": 3650, "max_mb": 0.001})
    report = Retention(store, spec).run(now_wall=2000.0)
    with_snapshot = [e.event.event_id for e in store.list_events(limit=100) if e.snapshot]
    assert report["snapshots"] >= 8 and len(with_snapshot) <= 4
    # the database is over its (tiny) size too: every ended event goes except e0000, whose webhook is queued
    assert [e.event.event_id for e in store.list_events(limit=100)] == ["e0000"]
    store.close()


def test_one_hub_per_data_folder(hub_home, tmp_path):
    first = HomeLock.acquire(tmp_path, wait_s=0)
    with pytest.raises(Conflict, match=r"in use by another hub \(pid \d+"):
        HomeLock.acquire(tmp_path, wait_s=0.3)
    first.release()
    HomeLock.acquire(tmp_path, wait_s=0).release()  # free again once the first lets go


def test_second_core_on_one_home_is_refused(core, monkeypatch):
    monkeypatch.setattr("pipelines.durability.OWNER_WAIT_S", 0.3)
    with pytest.raises(Conflict, match="HUB_HOME"):
        StreamManagerCore({}, data_dir=core.data_dir)


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "streams" / "cameras.json"
    errors = []

    def write(n: int) -> None:
        try:
            for k in range(30):
                write_json_atomic(target, [{"camera_id": f"cam{n}", "k": k}] * 50)
        except Exception as exc:  # pragma: no cover - what the old shared cameras.tmp produced
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(json.loads(target.read_text())) == 50  # whole, from one writer
    assert list(target.parent.glob("*.tmp")) == []
