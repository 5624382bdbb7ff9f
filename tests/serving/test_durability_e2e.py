"""Durability through a real running hub (its own, restarted in the test; run under the heavy lock):

1. A file camera sees a car that stays parked while `hub serve` is stopped and started again: before
   and after there is exactly one illegal-parking event, and it ends when the camera is removed.
2. The hub's data folder is a small tmpfs that the test fills up: the events of a camera are held in
   memory, `/readyz` answers 503 and says why while the disk is full, and once space returns every
   event is written (none lost) and the hub is ready again.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from hub.settings import reset_settings
from tests.pipelines import synth_video
from tests.serving.conftest import Hub, free_port
from tests.waiting import restore_env, wait_for
from tests.webhook_receiver import WebhookReceiver

# These tests start, stop and restart a hub of their own inside this process, which would also stop the
# session's shared hub: scripts/test.sh runs them in a pytest process of their own (marker own_hub).
pytestmark = [pytest.mark.serve, pytest.mark.own_hub]
KEY = "durability-e2e-key-0123456789"
PARKED_S = (3.0, 60.0)  # the car stands in the kerb zone this long: far longer than a restart


def camera(camera_id: str, url: str, **extra) -> dict:
    return {"camera_id": camera_id, "url": url, "analysis_fps": 4.0, "realtime": True,
            "zones": [{"zone_id": "kerb", "points": synth_video.KERB_ZONE, "normalized": True},
                      {"zone_id": "road", "points": synth_video.ROAD_ZONE, "normalized": True}],
            "rules": [{"kind": "illegal_parking", "zone_id": "kerb", "min_dwell_s": 4.0, "exit_grace_s": 1.5},
                      {"kind": "spill", "zone_id": "road", "min_s": 4.0}], **extra}

class HubProcess:
    """`serving.launch.start/stop` on one HUB_HOME, as often as the test restarts it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.config = home / "serving.yaml"
        self.config.write_text(yaml.safe_dump({
            "http": {"host": "127.0.0.1", "port": self.port, "request_timeout_s": 30},
            "ray": {"num_cpus": 4, "metrics_export_port": free_port()},
            "capabilities": {"see": {"model": "models:/yolov8n-coco@champion", "num_cpus": 0.2}},
            "streams": {"batch": {"max_batch_size": 4, "max_wait_ms": 5}, "num_cpus": 0.25,
                        # the test's webhook receivers listen on loopback over plain http
                        "outbound": {"allow": ["127.0.0.1/32"], "webhook_http": True}},
        }))
        self.hub = Hub(url=f"http://127.0.0.1:{self.port}", key=KEY)
        self.running = False

    def start(self) -> Hub:
        from serving.launch import start

        start(self.config)
        self.running = True
        with self.hub.client() as c:
            wait_for(lambda: c.get("/readyz").status_code == 200, 180, "the hub to be ready")
        return self.hub

    def stop(self) -> None:
        from serving.launch import stop

        if self.running:
            self.running = False
            stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory, shared_dir):
    home = tmp_path_factory.mktemp("durable-home")
    data = home / "data"
    data.mkdir()
    # A 48 MB tmpfs as the data disk, so that test 2 can fill it (needs the right to mount).
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)],
                             capture_output=True).returncode == 0
    saved = {k: os.environ.get(k) for k in ("HUB_HOME", "HUB_API_KEYS", "HUB_TRACKING_URI", "HUB_REGISTRY_URI")}
    os.environ.update(HUB_HOME=str(home), HUB_API_KEYS=f"ci:{KEY}")
    os.environ.pop("HUB_TRACKING_URI", None)
    os.environ.pop("HUB_REGISTRY_URI", None)
    reset_settings()
    proc = HubProcess(home)
    yield proc, mounted
    proc.stop()
    restore_env(saved)
    reset_settings()
    if mounted:
        subprocess.run(["umount", "-l", str(data)], check=False)


def Receiver(answer) -> WebhookReceiver:
    """Keeps (event_id, phase, end_reason) of each delivered event; `answer(n)`: the n-th request's status."""
    return WebhookReceiver(lambda posted: answer(posted.n),
                           keep=lambda body: (body["event_id"], body["phase"], body.get("end_reason")))


def parking_events(c, camera_id: str) -> list[dict]:
    reply = c.get("/v1/events", params={"camera_id": camera_id, "rule": "illegal_parking"})
    assert reply.status_code == 200, reply.text
    return reply.json()["events"]


def test_a_parked_car_is_one_event_across_a_hub_restart(home, shared_dir):
    proc, _ = home
    video = proc.home / "data" / "videos" / "parked.mp4"
    synth_video.make_video(video, shared_dir, duration_s=70.0, car_s=PARKED_S, debris_s=(65.0, 69.0))
    ops, gone = Receiver(lambda n: 204), Receiver(lambda n: 410)  # a working receiver, and one that left
    hub = proc.start()
    try:
        with hub.client() as c:
            spec = camera("kerbside", str(video), webhooks=[ops.url, gone.url])
            assert c.post("/v1/streams", json=spec).status_code == 200
            [first] = wait_for(lambda: parking_events(c, "kerbside"), 120, "the parking event")
            assert first["ended_ts"] is None
    finally:
        proc.stop()  # graceful: cameras stop, the open episode stays open in the store

    hub = proc.start()  # the camera comes back from cameras.json and reads the file from its start
    with hub.client() as c:
        # past the rule's dwell in the new session: the rule has fired again for the same car
        wait_for(lambda: (c.get("/v1/streams/kerbside").json().get("last_ts_s") or 0) > 15.0, 120,
                 "the restored camera to pass the dwell time")
        events = parking_events(c, "kerbside")
        assert [e["event_id"] for e in events] == [first["event_id"]] and events[0]["ended_ts"] is None
        assert c.delete("/v1/streams/kerbside").status_code == 200
        [ended] = parking_events(c, "kerbside")
        assert ended["event_id"] == first["event_id"] and ended["end_reason"] == "camera_removed"

        # the receiver got that one episode once per phase, across the restart
        expected = [(first["event_id"], "started", None), (first["event_id"], "ended", "camera_removed")]
        wait_for(lambda: [r for r in ops.received if r[0] == first["event_id"]] == expected, 60, "webhooks")
        # 410 is final: dead letters, visible in the API, sent again by a replay once the receiver is back
        dead = wait_for(lambda: [d for d in c.get("/v1/events/deadletters").json()["dead_letters"]
                                 if d["event_id"] == first["event_id"]], 60, "dead letters")
        assert [(d["phase"], d["attempts"]) for d in dead] == [("started", 1), ("ended", 1)]
        gone.answer = lambda posted: 204
        assert c.post("/v1/events/deadletters/replay", json={"url": gone.url}).json()["replayed"] >= 2
        wait_for(lambda: [r for r in gone.received if r[0] == first["event_id"]] == expected, 60, "the replay")
    ops.close()
    gone.close()


def test_a_full_disk_loses_no_event_and_readyz_says_why(home, shared_dir):
    proc, mounted = home
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN): the disk-full case is covered "
                    "in-process by tests/serving/test_storage_durability.py")
    data = proc.home / "data"
    video = data / "videos" / "short.mp4"
    truth = synth_video.make_video(video, shared_dir)
    hub = proc.hub if proc.running else proc.start()
    filler = data / "filler.bin"
    with hub.client() as c:
        assert c.post("/v1/streams", json=camera("full", str(video))).status_code == 200
        with open(filler, "wb") as fh:  # the disk fills up before the car has parked long enough
            try:
                while True:
                    fh.write(b"\0" * (1 << 20))
            except OSError:
                pass
        reply = wait_for(lambda: (r := c.get("/readyz")).status_code == 503 and r, 60, "/readyz to report it")
        problems = " ".join(reply.json()["streams"]["problems"])
        assert "memory" in problems or "nearly full" in problems, problems
        wait_for(lambda: c.get("/v1/streams/full").json()["state"] == "ended", 120, "the file to end")
        assert c.get("/readyz").status_code == 503  # still full: still not ready
        filler.unlink()  # space returns
        wait_for(lambda: c.get("/readyz").status_code == 200, 120, "the hub to be ready again")
        events = c.get("/v1/events", params={"camera_id": "full"}).json()["events"]
    by_rule = sorted((e["rule"], e["end_reason"]) for e in events)
    assert by_rule == [("illegal_parking", "left"), ("spill", "stream_ended")], events
    parking = next(e for e in events if e["rule"] == "illegal_parking")
    assert parking["ended_ts"] == pytest.approx(truth.car_s[1], abs=1.0)


def replica_pids(deployment: str) -> set[int]:
    """Processes of the hub's replicas of one deployment (Ray titles them `...ServeReplica:hub:<name>.<method>`)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(rf"ServeReplica:hub:{re.escape(deployment)}(\.|\s|$)", cmdline) and _ours(int(entry.name)):
            pids.add(int(entry.name))
    return pids


def _ours(pid: int) -> bool:
    """Started by this test's own Ray (a descendant of this process): never touch another hub."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def ready_without(hub: Hub, old: set[int], deployment: str) -> bool:
    try:
        with hub.client(timeout_s=10) as c:
            ready = c.get("/readyz").status_code == 200
            streams = c.get("/v1/streams").json().get("streams", []) if ready else []
    except Exception:  # the ingress itself may be the one restarting
        return False
    new = replica_pids(deployment)
    return ready and bool(new) and not (new & old) and any(s["camera_id"] == "chaos" for s in streams)


def test_kill_9_of_each_replica_kind_loses_no_accepted_event(home, shared_dir):
    proc, _ = home
    video = proc.home / "data" / "videos" / "chaos.mp4"
    synth_video.make_video(video, shared_dir)
    hub = proc.hub if proc.running else proc.start()
    recovery_s: dict[str, float] = {}
    with hub.client() as c:
        assert c.post("/v1/streams", json=camera("chaos", str(video), loop=True)).status_code == 200
        wait_for(lambda: c.get("/v1/events", params={"camera_id": "chaos"}).json()["events"], 120, "a first event")
    for deployment in ("capability-see", "streams", "ingress"):
        with hub.client() as c:
            accepted = {e["event_id"] for e in c.get("/v1/events", params={"camera_id": "chaos", "limit": 1000})
                        .json()["events"]}
        old = replica_pids(deployment)
        assert old, f"no {deployment} replica found"
        started = time.monotonic()
        for pid in old:
            os.kill(pid, 9)
        wait_for(lambda d=deployment, o=old: ready_without(hub, o, d), 300, f"recovery from killing {deployment}")
        recovery_s[deployment] = round(time.monotonic() - started, 1)
        with hub.client() as c:
            kept = {e["event_id"] for e in c.get("/v1/events", params={"camera_id": "chaos", "limit": 1000})
                    .json()["events"]}
        assert accepted <= kept, f"events lost when {deployment} was killed: {accepted - kept}"
    print(f"\nrecovery after kill -9 (s): {recovery_s}")
    with hub.client() as c:
        c.delete("/v1/streams/chaos")
