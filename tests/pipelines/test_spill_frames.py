"""The stream manager writes events through `SpillingRecorder`; every started event must keep its
clean frame beside the drawn snapshot, at once or after a spell in the spill, because the clean
frame is what `hub events export --reviewed` turns into training data. (The recorder once passed
only the drawn snapshot to the store: through the hub no event had a frame to export.)"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.events import EventStore
from pipelines.rules.base import Event
from pipelines.spill import SpillingRecorder


def _event(i: int) -> Event:
    return Event(f"e{i}", "cam1", "spill", "road", i, float(i), None, (10.0, 20.0, 90.0, 80.0), 0.9, "debris",
                 model=("cars", "2"))


@pytest.mark.parametrize("disk_full", [False, True])
def test_started_events_keep_their_clean_frame(tmp_path, disk_full):
    store = EventStore.open(tmp_path)
    if disk_full:
        store.set_max_db_bytes(store.db_bytes())  # SQLite: "database or disk is full" after a few dozen rows
    recorder = SpillingRecorder(store, retry_initial_s=60)
    images = [np.full((120, 160, 3), i % 250, np.uint8) for i in range(80)]
    results = [recorder.record(_event(i), image) for i, image in enumerate(images)]
    assert (None in results) == disk_full  # spilled while the store refused writes
    store.set_max_db_bytes(None)
    assert recorder.close() == 0
    for i, image in enumerate(images):
        clean = store.snapshot_bytes(f"e{i}", clean=True)
        drawn = store.snapshot_bytes(f"e{i}")
        assert clean[:2] == drawn[:2] == b"\xff\xd8" and clean != drawn
        decoded = cv2.imdecode(np.frombuffer(clean, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == image.shape and abs(float(decoded.mean()) - float(image.mean())) <= 2  # no box drawn
