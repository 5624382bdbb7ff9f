"""Must-show 3 of issue 14: the review pages in a real browser (Debian's Chromium driven by
Playwright) against the running hub: sign in with an API key, see an event with its snapshot and
model version, reject it with a note, and find the rejection through the API. Then the CLI: confirm
another event and export the reviewed events as a YOLO dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hub.settings import get_settings
from tests.pipelines import synth_video

pytestmark = pytest.mark.serve

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that phones home (updates, field trials, safe browsing lists).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
CAMERA = "ui-synth"


def _browser(playwright):
    if not CHROMIUM.is_file() or shutil.which(str(CHROMIUM)) is None:
        message = f"{CHROMIUM} is missing: apt-get install chromium (scripts/install.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)


def _events(hub_server, count: int, timeout_s: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    with hub_server.client() as c:
        while time.monotonic() < deadline:
            events = c.get("/v1/events", params={"camera_id": CAMERA}).json()["events"]
            if len([e for e in events if e["has_snapshot"]]) >= count:
                return events
            time.sleep(1.0)
    raise AssertionError(f"fewer than {count} events from {CAMERA}")


@pytest.mark.timeout(2700)  # the session hub may start inside this test (minutes on 2 busy cores)
def test_sign_in_see_reject_and_find_it_through_the_api(hub_server, shared_dir, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    video = get_settings().data_dir / "videos" / "ui.mp4"
    synth_video.make_video(video, shared_dir)
    camera = {"camera_id": CAMERA, "url": str(video), "realtime": False, "analysis_fps": 4.0,
              "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                        {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
              "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                        {"kind": "spill", "zone_id": "road", "min_s": 4.0}]}
    with hub_server.client(timeout_s=180) as c:
        assert c.post("/v1/streams", json=camera).status_code == 200
    events = _events(hub_server, 2)
    target, other = events[0], events[1]

    with playwright_api.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(f"{hub_server.url}/ui")
        assert page.url.endswith("/ui/login")  # no session yet
        page.fill("input[name=api_key]", "wrong-key")
        page.click("button[type=submit]")
        assert "unknown or revoked API key" in page.inner_text("[role=alert]")
        page.fill("input[name=api_key]", hub_server.key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{hub_server.url}/ui")
        row = page.locator(f"#camera-{CAMERA}")
        assert "yolov8n-coco v1" in row.locator(".model").inner_text()

        page.goto(f"{hub_server.url}/ui/events?camera_id={CAMERA}")
        event = page.locator(f"tr[id='{target['event_id']}']")
        snapshot = event.locator("img.snap")
        snapshot.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=snapshot.element_handle())
        assert "yolov8n-coco v1" in event.locator(".model").inner_text()
        event.locator("input[name=note]").fill("a shadow, not a spill")
        event.locator("button[value=reject]").click()
        page.wait_for_load_state()
        assert "rejected" in page.locator(f"tr[id='{target['event_id']}'] .review").inner_text()
        page.goto(f"{hub_server.url}/ui/events?camera_id={CAMERA}&review=rejected")
        assert page.locator("tr.event").count() == 1
        browser.close()

    with hub_server.client() as c:
        rejected = c.get("/v1/reviews", params={"review": "rejected", "camera_id": CAMERA}).json()["events"]
        assert [e["event_id"] for e in rejected] == [target["event_id"]]
        assert rejected[0]["review"]["note"] == "a shadow, not a spill" and rejected[0]["review"]["reviewer"] == "ci"
        # a bad review is a 400, an unknown event a 404
        assert c.post(f"/v1/events/{target['event_id']}/review", json={"action": "maybe"}).status_code == 400
        assert c.post("/v1/events/nope/review", json={"action": "confirm"}).status_code == 404

    from cli.main import app

    cli = ("--url", hub_server.url, "--api-key", hub_server.key)
    runner = CliRunner()
    confirmed = runner.invoke(app, ["events", "review", other["event_id"], "confirm", *cli])
    assert confirmed.exit_code == 0 and "confirmed by ci" in confirmed.output, confirmed.output
    out = tmp_path / "reviewed"
    exported = runner.invoke(app, ["events", "export", str(out), "--reviewed", "--format", "yolo", "--camera", CAMERA,
                                   *cli])
    assert exported.exit_code == 0, exported.output
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert list(doc["names"].values()) == [other["class_name"]]
    proposals = [json.loads(line) for line in (out / "relabel" / "proposals.jsonl").read_text().splitlines()]
    assert [p["event_id"] for p in proposals] == [target["event_id"]]  # the rejected event, to relabel
    with hub_server.client() as c:
        assert c.delete(f"/v1/streams/{CAMERA}").status_code == 200
