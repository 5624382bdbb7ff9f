"""Streams end to end through the running Ray Serve hub (`hub_server` of tests/serving/conftest.py):
add cameras over HTTP, receive their events over the API and Server-Sent Events, fetch a snapshot.

Needs the session hub to serve the stream manager, i.e. `"streams": {...}` in its serving config;
without it the test is skipped (and fails under CI=true, like a missing shared file).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from hub.settings import get_settings
from tests.pipelines import synth_video

pytestmark = pytest.mark.serve


def _require_streams(client) -> None:
    reply = client.get("/v1/streams")
    if reply.status_code == 200:
        return
    message = f"the session hub does not serve streams ({reply.status_code}): add 'streams' to its config"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _camera(camera_id: str, url: str, **extra) -> dict:
    return {"camera_id": camera_id, "url": url, "analysis_fps": 4.0,
            "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                      {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                      {"kind": "spill", "zone_id": "road", "min_s": 4.0}], **extra}


def test_cameras_events_sse_and_snapshot_through_the_hub(hub_server, shared_dir):
    from cli.commands.streams import iter_sse

    with hub_server.client() as c:
        _require_streams(c)
    # The stream manager reads files only under the hub's data folders: render the video there.
    video = get_settings().data_dir / "videos" / "synth.mp4"
    truth = synth_video.make_video(video, shared_dir)
    received: list[dict] = []

    def listen():
        with hub_server.client(timeout_s=300) as c, \
                c.stream("GET", "/v1/events/stream", params={"camera_id": "e2e-synth"}) as resp:
            assert resp.status_code == 200
            for item in iter_sse(resp.iter_lines()):
                received.append(item)
                if sum(e["phase"] == "started" for e in received) >= 2:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # subscribed before the first event can happen
    with hub_server.client(timeout_s=180) as c:
        # the real overhead video, its COCO "cell phone" cars read as cars, paced like a live camera
        overhead = {"camera_id": "e2e-overhead", "url": "{shared_dir}/data/video/parking-lot-overhead.mp4",
                    "loop": True, "analysis_fps": 2.0, "classes": {"rename": {"cell phone": "car", "suitcase": "car"}},
                    "zones": [{"zone_id": "lot", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "normalized": True}],
                    "rules": [{"kind": "illegal_parking", "zone_id": "lot", "min_dwell_s": 60}]}
        for body in (_camera("e2e-synth", str(video), realtime=False), overhead):
            reply = c.post("/v1/streams", json=body)
            assert reply.status_code == 200, reply.text

        listener.join(240)
        assert not listener.is_alive(), received
        assert sorted(e["rule"] for e in received if e["phase"] == "started") == ["illegal_parking", "spill"]

        events = c.get("/v1/events", params={"camera_id": "e2e-synth"}).json()["events"]
        parking = next(e for e in events if e["rule"] == "illegal_parking")
        assert parking["started_ts"] == pytest.approx(truth.car_s[0], abs=1.0)
        snap = c.get(f"/v1/events/{parking['event_id']}/snapshot.jpg")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"

        lot = c.get("/v1/streams/e2e-overhead").json()
        assert lot["state"] in ("live", "over_capacity") and lot["frames_analysed"] > 0, lot
        assert lot["model"]["name"] == "yolov8n-coco"
        for camera_id in ("e2e-synth", "e2e-overhead"):
            assert c.delete(f"/v1/streams/{camera_id}").status_code == 200
        assert c.get("/v1/streams/e2e-overhead").status_code == 404
