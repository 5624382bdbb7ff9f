"""Event review (confirm / reject with a note, persisted beside the events) and the export of
reviewed events as a YOLO dataset that `hub train see` takes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hub.errors import InvalidInput, NotFound
from pipelines.events import EventStore
from pipelines.review import ReviewBook
from pipelines.rules.base import Event
from tests.conftest import require_shared
from training.see.data import DetectionData
from training.see.reviewed import export_yolo


def _event(i: int, camera: str = "cam1", rule: str = "illegal_parking", bbox=(10, 20, 50, 60), cls="car") -> Event:
    return Event(f"ev{i:03d}", camera, rule, "kerb", i, float(i), None, bbox, 0.8, cls, model=("cars", "2"))


@pytest.fixture
def book(tmp_path) -> ReviewBook:
    store = EventStore(tmp_path / "events")
    frame = np.full((120, 160, 3), 90, np.uint8)
    for i, (camera, rule) in enumerate([("cam1", "illegal_parking"), ("cam1", "spill"), ("cam2", "illegal_parking")]):
        store.record(_event(i, camera, rule), frame, now_wall=1000.0 + i)
    return ReviewBook(store)


def test_review_persists_and_the_latest_wins(book, tmp_path):
    book.review("ev000", "reject", note="  shadow  ", reviewer="ops", now_wall=2000.0)
    assert book.get("ev000").verdict == "rejected" and book.get("ev000").note == "shadow"
    book.review("ev000", "confirm", reviewer="lead", now_wall=2001.0)
    reopened = ReviewBook(EventStore(tmp_path / "events"))  # persisted in the event database
    review = reopened.get("ev000")
    assert (review.verdict, review.note, review.reviewer) == ("confirmed", None, "lead")
    assert reopened.event("ev000")["model"] == {"name": "cars", "version": "2"}


@pytest.mark.parametrize("event_id, action, note, error", [
    ("ev000", "approve", None, InvalidInput),
    ("ev000", "reject", "x" * 1001, InvalidInput),
    ("nope", "confirm", None, NotFound),
])
def test_bad_reviews_are_refused(book, event_id, action, note, error):
    with pytest.raises(error):
        book.review(event_id, action, note=note)


@pytest.mark.parametrize("filters, expected", [
    ({}, ["ev002", "ev001", "ev000"]),
    ({"state": "unreviewed"}, ["ev002"]),
    ({"state": "reviewed"}, ["ev001", "ev000"]),
    ({"state": "rejected"}, ["ev001"]),
    ({"state": "confirmed", "camera_id": "cam1"}, ["ev000"]),
    ({"rule": "illegal_parking"}, ["ev002", "ev000"]),
    ({"since_wall": 1000.5, "until_wall": 1001.5}, ["ev001"]),
])
def test_list_events_filters_by_review_state(book, filters, expected):
    book.review("ev000", "confirm")
    book.review("ev001", "reject", note="a bin bag")
    rows = book.list_events(**filters)
    assert [r["event_id"] for r in rows] == expected
    assert all(("review" in r) for r in rows)


def test_unknown_state_is_refused(book):
    with pytest.raises(InvalidInput):
        book.list_events(state="maybe")


def test_clean_frame_is_kept_beside_the_snapshot(book):
    clean, drawn = book.store.snapshot_bytes("ev000", clean=True), book.store.snapshot_bytes("ev000")
    assert clean[:2] == drawn[:2] == b"\xff\xd8" and clean != drawn


# ---- export -> hub train see ------------------------------------------------------------------------

def _reviewed_store(tmp_path, images, data: DetectionData, verdicts):
    """Events on real overhead-car frames: each event is one labelled car of that frame."""
    from PIL import Image

    store = EventStore(tmp_path / "events")
    book = ReviewBook(store)
    for i, (path, verdict) in enumerate(zip(images, verdicts, strict=True)):
        frame = np.asarray(Image.open(path).convert("RGB"))
        _, boxes = data.labels(path, frame.shape[1], frame.shape[0])
        store.record(_event(i, bbox=tuple(float(v) for v in boxes[0])), frame, now_wall=1000.0 + i)
        book.review(f"ev{i:03d}", verdict, note=f"{verdict} by test")
    return book


def _fetch(store: EventStore):
    return lambda event_id: store.snapshot_bytes(event_id, clean=True)


def test_export_writes_a_dataset_hub_train_see_reads(tmp_path):
    cars = DetectionData.read(require_shared("data", "detection", "overhead-cars", "data.yaml"))
    verdicts = ["confirm"] * 6 + ["reject"] * 2
    book = _reviewed_store(tmp_path, cars.train[:8], cars, verdicts)
    summary = export_yolo(book.list_events(state="reviewed"), _fetch(book.store), tmp_path / "out")
    assert summary.names == ("car",) and summary.train + summary.val >= 6 and summary.relabel == 2
    data = DetectionData.read(tmp_path / "out" / "data.yaml")
    assert data.names == ("car",) and data.train and data.val
    cls, xyxy = data.labels(data.train[0], 640, 640)
    assert cls.tolist() == [0] and len(xyxy) == 1  # the event's box, on the frame without drawings
    proposals = [json.loads(line) for line in (tmp_path / "out" / "relabel" / "proposals.jsonl").read_text().splitlines()]
    assert {p["note"] for p in proposals} == {"reject by test"} and all(p["model"]["version"] == "2" for p in proposals)
    assert not any(p.name.startswith(tuple(x["event_id"] for x in proposals)) for p in data.train + data.val)


@pytest.mark.parametrize("verdicts, names, error", [
    (["reject", "reject"], None, "no confirmed events"),
    (["confirm"], ["truck"], "none of the confirmed events"),
])
def test_export_refuses_what_cannot_train(tmp_path, verdicts, names, error):
    cars = DetectionData.read(require_shared("data", "detection", "overhead-cars", "data.yaml"))
    book = _reviewed_store(tmp_path, cars.train[: len(verdicts)], cars, verdicts)
    with pytest.raises(InvalidInput, match=error):
        export_yolo(book.list_events(state="reviewed"), _fetch(book.store), tmp_path / "out", names=names)


def test_a_single_confirmed_event_serves_both_splits(tmp_path):
    cars = DetectionData.read(require_shared("data", "detection", "overhead-cars", "data.yaml"))
    book = _reviewed_store(tmp_path, cars.train[:1], cars, ["confirm"])
    summary = export_yolo(book.list_events(), _fetch(book.store), tmp_path / "out")
    assert (summary.train, summary.val) == (1, 1)
    doc = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert doc["names"] == {0: "car"}


def test_missing_frames_are_skipped_and_said(tmp_path):
    cars = DetectionData.read(require_shared("data", "detection", "overhead-cars", "data.yaml"))
    book = _reviewed_store(tmp_path, cars.train[:3], cars, ["confirm"] * 3)

    def fetch(event_id: str) -> bytes:
        if event_id == "ev001":
            raise NotFound("no frame")
        return book.store.snapshot_bytes(event_id, clean=True)

    summary = export_yolo(book.list_events(), fetch, tmp_path / "out")
    assert list(summary.skipped) == ["ev001"] and summary.train + summary.val >= 2
