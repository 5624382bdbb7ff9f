"""`FollowingDetector`: a camera detector that follows its alias (load beside, swap, keep the old
one when a new version fails), and tags every result with the version that produced it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hub.errors import ModelLoadError
from models.detection import Detections
from pipelines.follow import FollowingDetector


class FakeDetector:
    """Answers with no boxes; `gate` lets a test hold a call inside the detector."""

    def __init__(self, version: str, gate: threading.Event | None = None) -> None:
        self.version, self.gate, self.closed = version, gate, False
        self.entered = threading.Event()

    def detect_arrays(self, frames, **_kwargs):
        if self.closed:
            raise RuntimeError("closed detector called")
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        return [Detections.empty(("car",), 8, 8) for _ in frames]

    def close(self) -> None:
        self.closed = True


class Registry:
    """Where the alias points, and which versions are broken."""

    def __init__(self, broken=()) -> None:
        self.alias, self.broken, self.loaded = "1", set(broken), []

    def load(self, ref: str):
        version = self.alias
        if version in self.broken:
            raise ModelLoadError(f"version {version} is broken")
        det = FakeDetector(version)
        self.loaded.append(det)
        return det, {"name": "cars", "version": version, "alias": "champion"}

    def current(self, _ref: str) -> str:
        return self.alias


FRAME = [np.zeros((8, 8, 3), np.uint8)]


@pytest.mark.parametrize("moves, versions, error_on", [
    (["2"], ["1", "2"], None),  # promote: swapped in
    (["2", "1"], ["1", "2", "1"], None),  # promote, rollback
    (["3"], ["1", "1"], "3"),  # broken: refused, old one kept, error shown
    (["3", "1"], ["1", "1", "1"], None),  # broken, then rolled back: the error clears
    (["3", "2"], ["1", "1", "2"], None),  # broken, then a good one
])
def test_follows_the_alias(moves, versions, error_on):
    reg = Registry(broken={"3"})
    det = FollowingDetector("models:/cars@champion", reg.load, reg.current)
    seen = [det.detect_arrays(FRAME)[0].model[1]]
    for version in moves:
        reg.alias = version
        det.check()
        seen.append(det.detect_arrays(FRAME)[0].model[1])
    assert seen == versions
    info = det.info()
    assert (info["failed_version"] == error_on) and ((info["error"] is not None) == (error_on is not None))
    if error_on:
        assert f"version {error_on} failed to load; still on version 1" in info["error"]
    assert [d.closed for d in reg.loaded] == [True] * (len(reg.loaded) - 1) + [False]


def test_a_failed_version_is_not_reloaded_every_poll():
    reg = Registry(broken={"3"})
    det = FollowingDetector("models:/cars@champion", reg.load, reg.current)
    calls = []
    original = reg.load
    reg.alias = "3"
    det._load = lambda ref: calls.append(ref) or original(ref)
    for _ in range(3):
        det.check()
    assert len(calls) == 1


def test_a_frame_inside_the_old_version_finishes_there():
    """No lost frames: the swap waits for the call in the old detector, which answers as version 1."""
    gate = threading.Event()
    reg = Registry()
    det = FollowingDetector("models:/cars@champion", lambda ref: (FakeDetector("1", gate), {"name": "cars", "version": "1"}),
                            reg.current)
    old = det._slot.detector
    result = []
    inflight = threading.Thread(target=lambda: result.extend(det.detect_arrays(FRAME)))
    inflight.start()
    assert old.entered.wait(5)
    det._load = reg.load
    reg.alias = "2"
    swapper = threading.Thread(target=det.check)
    swapper.start()
    swapper.join(0.3)
    assert swapper.is_alive() and not old.closed  # new version loaded, old one still answering
    assert det.detect_arrays(FRAME)[0].model == ("cars", "2")  # new frames already go to version 2
    gate.set()
    inflight.join(5)
    swapper.join(5)
    assert result[0].model == ("cars", "1") and old.closed


def test_a_pinned_reference_never_polls():
    reg = Registry()
    det = FollowingDetector("models:/cars/1", reg.load, reg.current, follows=False).start(poll_s=0.01)
    assert det._thread is None and det.info()["follows"] is False
    det.close()


@pytest.mark.parametrize("model, expected", [
    (("cars", "2"), {"name": "cars", "version": "2"}),
    (None, None),  # an event of a store from before model versions
])
def test_events_record_the_model_in_store_feed_and_payload(tmp_path, model, expected):
    """The feed entry is what SSE sends and what a webhook delivery's body is made of."""
    from pipelines.events import EventStore
    from pipelines.rules.base import Event

    store = EventStore(tmp_path)
    event = Event("e1", "cam", "spill", "road", 1, 1.0, None, (1, 2, 3, 4), 0.9, "debris", model=model)
    stored = store.record(event, np.zeros((8, 8, 3), np.uint8), webhooks=["http://127.0.0.1:9/hook"])
    assert store.get("e1").to_dict()["model"] == expected
    assert store.feed_item(stored.seq).to_dict()["model"] == expected
    ended = store.record(Event("e1", "cam", "spill", "road", 1, 1.0, 5.0, (1, 2, 3, 4), 0.9, "debris", phase="ended"))
    assert store.feed_item(ended.seq).to_dict()["model"] == expected  # the episode keeps its start's model
