"""Cameras spread over shard actors across a Ray cluster, re-homed when a shard dies.

With `streams.shards: N` (or `auto`: one per GPU of the cluster) the stream manager keeps the event
store, webhook delivery, reviews and the camera list, and places each camera on one of N
`StreamShard` actors (least-loaded, spread over the nodes). A shard runs the cameras, detectors and
batchers (`serving/camera_host.py`); its events wait in its `Outbox` until the manager has stored
them: one puller thread per shard long-polls `drain(ack_seq)`, writes what it got to the store (each
phase once: a write repeated after a failure changes nothing) and acknowledges it with the next poll.

Why this is exactly once across a move: only the manager writes the store and sends webhooks. When
a shard dies (its process killed, its node lost, or it stops answering, when it is killed first),
the puller has stored everything the shard handed over; its cameras are started on the survivors
with their open episodes from the store, so a vehicle still parked continues its episode instead of
firing again (`pipelines/episodes.py`), and an end the dead shard never handed over is written by
the survivor (the vehicle left: `left`; or `restart_unmatched` when nothing matched in time).

>>> pool = ShardPool(options, count=2, record=manager_record, open_events=store.open_events)
>>> pool.start(spec)          # stats + {"replica": "shard-1", "node": "10.0.0.7", "node_id": ...}
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from hub.errors import HubError, InvalidInput, NotFound, NotReady
from pipelines.events import StoredEvent
from pipelines.outbox import Outbox, OutboxItem

log = logging.getLogger("ray.serve")
CALL_TIMEOUT_S = 60.0  # a shard's answer to a camera call (a first camera loads its detector)
DRAIN_WAIT_S = 0.5  # long poll: an event reaches the store within about this much after it fired
MAX_SILENT_POLLS = 3  # polls that time out in a row before a shard counts as lost (and is killed)


class StreamShard:
    """A Ray actor running a share of the cameras (threaded: a drain waits while cameras are added)."""

    def __init__(self, label: str, options: dict, data_dir: str | None = None) -> None:
        from hub.contract import validate_as
        from hub.settings import apply_runtime_env
        from pipelines.stream_config import StreamsConfig, webhook_specs
        from pipelines.streams import EventSink
        from serving.camera_host import CameraHost

        settings = apply_runtime_env()
        config = validate_as(StreamsConfig, options)
        self.label = label
        self.outbox = Outbox()
        sink = EventSink(self.outbox, None, [w.url for w in webhook_specs(config.webhooks)],
                         max_episode_s=config.max_episode_s)
        self.host = CameraHost(config, settings, sink, data_dir=None if data_dir is None else Path(data_dir))

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"replica": self.label, "node": ray.util.get_node_ip_address(), "node_id": ctx.get_node_id(),
                "pid": os.getpid()}

    def add(self, payload: dict, replace: bool, open_events: list[StoredEvent]) -> dict:
        from hub.contract import validate_as
        from pipelines.stream_config import CameraSpec

        spec = validate_as(CameraSpec, payload)
        self.outbox.carry(spec.camera_id, open_events)
        return self.host.start(spec, replace=replace)

    def call(self, method: str, *args) -> Any:
        """`remove`, `list`, `get`, `thumbnail`, `capacity`, `status` of the shard's CameraHost."""
        if method not in ("remove", "list", "get", "thumbnail", "capacity", "status"):
            raise ValueError(f"no shard method {method!r}")
        return getattr(self.host, method)(*args)

    def drain(self, ack_seq: int, wait_s: float) -> list[OutboxItem]:
        return self.outbox.drain(ack_seq, wait_s)

    def close(self) -> None:
        self.host.close()


@dataclass
class _Shard:
    index: int
    actor: Any
    where: dict = field(default_factory=dict)
    ack: int = 0
    alive: bool = False

    @property
    def label(self) -> str:
        return f"shard-{self.index}"


class ShardPool:
    """The manager's side: shards, which camera is where, the pullers, re-homing.

    `record(item)` stores one `OutboxItem` (the manager's spilling recorder); `open_events(camera_id)`
    reads a camera's open episodes from the store. `actor_options` go to each shard actor
    (`num_cpus`, `num_gpus`, `resources`)."""

    def __init__(self, options: dict, count: int, record: Callable[[OutboxItem], None],
                 open_events: Callable[[str], list], *, actor_options: dict | None = None,
                 env: dict[str, str] | None = None, data_dir: Path | None = None,
                 ready_timeout_s: float = 60.0) -> None:
        self.options = options
        self.data_dir = None if data_dir is None else str(data_dir)  # file cameras are checked against it
        self.record = record
        self.open_events = open_events
        self.actor_options = {**(actor_options or {}), "runtime_env": {"env_vars": dict(env or {})}}
        self.rehomed = 0  # cameras started again after their shard was lost (not those waiting at start-up)
        self._homeless: set[str] = set()  # cameras of a lost shard not yet running elsewhere
        self.moves: deque[dict] = deque(maxlen=20)  # the last shard losses: when, how many cameras, how long
        self._shards: dict[int, _Shard] = {}
        self._owner: dict[str, int | None] = {}  # camera -> shard index (None: waiting for a shard)
        self._specs: dict[str, Any] = {}  # camera -> CameraSpec, to start it again elsewhere
        self._lock = threading.RLock()
        self._closed = threading.Event()
        for index in range(count):
            self._spawn(index)
        # Every shard up before the manager restores its cameras, so they spread; one that cannot be
        # scheduled (its node is away) gets cameras when it comes up, new ones or moved ones.
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline and not all(s.alive for s in self._alive_or_not()):
            time.sleep(0.1)

    # -- shards -------------------------------------------------------------------------------
    def _new_actor(self, label: str):
        # Not restarted by Ray: a dead shard's cameras move to the survivors at once, and its slot
        # gets a new shard wherever there is room (its node may be gone).
        return ray.remote(StreamShard).options(max_concurrency=32, max_restarts=0, scheduling_strategy="SPREAD",
                                               **self.actor_options).remote(label, self.options, self.data_dir)

    def _spawn(self, index: int) -> None:
        shard = _Shard(index, None)
        shard.actor = self._new_actor(shard.label)
        with self._lock:
            self._shards[index] = shard
        threading.Thread(target=self._pull, args=(shard,), name=f"streams-pull-{index}", daemon=True).start()

    def _pull(self, shard: _Shard) -> None:
        """Wait for the shard to start, then drain its outbox until it is lost or the pool closes."""
        while not self._closed.is_set() and not shard.alive:
            try:
                shard.where = ray.get(shard.actor.where.remote(), timeout=5.0)
            except ray.exceptions.GetTimeoutError:
                continue  # not scheduled yet (its node is gone, or busy): keep waiting
            except ray.exceptions.RayError as exc:
                log.error("streams: %s could not start: %s", shard.label, exc)
                self._closed.wait(5.0)
                shard.actor = self._new_actor(shard.label)
                continue
            shard.alive = True
            log.info("streams: %s is up on node %s (pid %s)", shard.label, shard.where["node"], shard.where["pid"])
            self._place_waiting()
        silent = 0
        while not self._closed.is_set():
            try:
                items = ray.get(shard.actor.drain.remote(shard.ack, DRAIN_WAIT_S), timeout=DRAIN_WAIT_S + 10.0)
            except ray.exceptions.GetTimeoutError:
                silent += 1
                if silent < MAX_SILENT_POLLS:
                    continue
                items = None
            except ray.exceptions.RayError:
                items = None
            if items is None:
                if not self._closed.is_set():
                    self._lost(shard)
                return
            silent = 0
            for item in items:
                try:
                    self.record(item)
                except Exception:  # a bug in one write must not stop the others; the spill keeps storage errors
                    log.exception("streams: event %s from %s could not be recorded", item.event.event_id, shard.label)
                shard.ack = item.seq

    def _lost(self, shard: _Shard) -> None:
        """Kill what may still run (a hung shard must not run its cameras twice), re-home, replace."""
        shard.alive = False
        lost_wall = time.time()
        with contextlib.suppress(Exception):
            ray.kill(shard.actor, no_restart=True)
        with self._lock:
            moved = [cid for cid, idx in self._owner.items() if idx == shard.index]
            for cid in moved:
                self._owner[cid] = None
            self._homeless.update(moved)
        log.error("streams: %s on node %s is lost; re-homing its %d cameras", shard.label,
                  shard.where.get("node"), len(moved))
        self._place_waiting()
        with self._lock:
            left = sum(1 for cid in moved if self._owner.get(cid) is None)
        self.moves.append({"replica": shard.label, "node": shard.where.get("node"), "lost_wall": lost_wall,
                           "cameras": len(moved), "waiting": left, "rehomed_s": round(time.time() - lost_wall, 3)})
        self._spawn(shard.index)  # a new shard for this slot: comes up where there is room

    def _alive_or_not(self) -> list[_Shard]:
        with self._lock:
            return list(self._shards.values())

    def _alive(self) -> list[_Shard]:
        with self._lock:
            return [s for s in self._shards.values() if s.alive]

    def _least_loaded(self) -> _Shard | None:
        alive = self._alive()
        with self._lock:
            load = {s.index: 0 for s in alive}
            for idx in self._owner.values():
                if idx in load:
                    load[idx] += 1
        return min(alive, key=lambda s: (load[s.index], s.index), default=None)

    def _place_waiting(self) -> None:
        with self._lock:
            waiting = [cid for cid, idx in self._owner.items() if idx is None]
        for cid in waiting:
            try:
                self._place(cid, replace=True)
            except Exception as exc:  # this camera stays waiting; the others go on
                log.error("streams: camera %s could not be re-homed: %s", cid, exc)
                continue
            with self._lock:
                if cid in self._homeless:
                    self._homeless.discard(cid)
                    self.rehomed += 1

    def _place(self, camera_id: str, *, replace: bool) -> dict:
        shard = self._least_loaded()
        if shard is None:
            raise NotReady("no stream shard is running; the camera starts when one is")
        stats = self._add_on(shard, camera_id, replace)
        with self._lock:
            self._owner[camera_id] = shard.index
        return stats

    def _add_on(self, shard: _Shard, camera_id: str, replace: bool) -> dict:
        """Start the camera on `shard` with its open episodes from the store; its stats and placement."""
        payload = self._specs[camera_id].model_dump(mode="json")
        return {**_result(shard.actor.add.remote(payload, replace, self.open_events(camera_id))), **_placement(shard)}

    # -- what the manager calls ---------------------------------------------------------------
    def start(self, spec, *, replace: bool = False) -> dict:
        with self._lock:
            current = self._owner.get(spec.camera_id)
            if spec.camera_id in self._owner and not replace:
                raise InvalidInput(f"camera {spec.camera_id!r} exists; remove it first", field="camera_id")
            old = self._specs.get(spec.camera_id)
            self._specs[spec.camera_id] = spec
        if current is not None:  # replaced: it stays on its shard
            return self._add_on(self._shards[current], spec.camera_id, True)
        if not self._alive():  # it starts when a shard is up (a restart must not forget saved cameras)
            with self._lock:
                self._owner[spec.camera_id] = None
            return _unplaced(spec.camera_id, "waiting")
        try:
            return self._place(spec.camera_id, replace=replace)
        except Exception:
            with self._lock:
                if old is None:
                    self._specs.pop(spec.camera_id, None)
            raise

    def _owner_of(self, camera_id: str) -> _Shard:
        with self._lock:
            if camera_id not in self._owner:
                raise NotFound(f"no camera {camera_id!r}")
            idx = self._owner[camera_id]
            shard = None if idx is None else self._shards.get(idx)
        if shard is None or not shard.alive:
            raise NotReady(f"camera {camera_id!r} is being re-homed to another shard")
        return shard

    def remove(self, camera_id: str) -> dict:
        with self._lock:
            if camera_id in self._owner and self._owner[camera_id] is None:  # waiting for a shard: nothing runs
                self._owner.pop(camera_id)
                self._specs.pop(camera_id, None)
                self._homeless.discard(camera_id)
                return _unplaced(camera_id, "removed")
        shard = self._owner_of(camera_id)
        stats = _result(shard.actor.call.remote("remove", camera_id))
        with self._lock:
            self._owner.pop(camera_id, None)
            self._specs.pop(camera_id, None)
        return {**stats, **_placement(shard)}

    def get(self, camera_id: str) -> dict:
        shard = self._owner_of(camera_id)
        return {**_result(shard.actor.call.remote("get", camera_id)), **_placement(shard)}

    def thumbnail(self, camera_id: str) -> bytes:
        return _result(self._owner_of(camera_id).actor.call.remote("thumbnail", camera_id))

    def list(self) -> list[dict]:
        rows = []
        for shard, found in self._each("list"):
            rows.extend({**row, **_placement(shard)} for row in found or [])
        listed = {row["camera_id"] for row in rows}
        with self._lock:
            moving = [cid for cid in self._owner if cid not in listed]
        return rows + [_unplaced(cid, "waiting") for cid in moving]

    def capacity(self) -> dict:
        return _total_capacity({shard.label: found for shard, found in self._each("capacity") if found is not None})

    def status(self) -> dict:
        found = self._each("status")  # each shard's status carries its capacity: one round trip, not two
        per = {shard.label: {**(got or {}), **shard.where} for shard, got in found}
        with self._lock:
            cameras = len(self._owner)
        capacity = _total_capacity({shard.label: got["capacity"] for shard, got in found if got is not None})
        return {"cameras": cameras, "capacity": capacity, "shards": per, "rehomed": self.rehomed,
                "moves": list(self.moves)}

    def _each(self, method: str) -> list[tuple[_Shard, Any]]:
        """Ask every live shard at once; a shard that fails to answer gives None."""
        refs = [(s, s.actor.call.remote(method)) for s in self._alive()]
        out = []
        for shard, ref in refs:
            try:
                out.append((shard, _result(ref, timeout_s=15.0)))
            except Exception as exc:
                log.warning("streams: %s did not answer %s: %s", shard.label, method, exc)
                out.append((shard, None))
        return out

    def close(self) -> None:
        """Stop every shard's cameras, store what their outboxes still hold, end the actors."""
        shards = self._alive()
        closing = [s.actor.close.remote() for s in shards]
        with contextlib.suppress(Exception):
            ray.get(closing, timeout=30.0)
        self._closed.set()
        for shard in shards:
            with contextlib.suppress(Exception):
                for item in ray.get(shard.actor.drain.remote(shard.ack, 0.0), timeout=10.0):
                    self.record(item)
        for shard in self._shards.values():
            with contextlib.suppress(Exception):
                ray.kill(shard.actor, no_restart=True)


def _total_capacity(per: dict[str, dict]) -> dict:
    """The shards' capacity views (pipelines/capacity.py) in one: over capacity anywhere, frames/s summed."""
    return {"over_capacity": any(c.get("over_capacity") for c in per.values()),
            "analysed_fps": round(sum(c.get("analysed_fps") or 0.0 for c in per.values()), 2), "replicas": per}


def _unplaced(camera_id: str, state: str) -> dict:
    """The row of a camera no shard runs (waiting for one, or removed while it waited)."""
    return {"camera_id": camera_id, "state": state, "replica": None, "node": None}


def _placement(shard: _Shard) -> dict:
    return {"replica": shard.label, "node": shard.where.get("node"), "node_id": shard.where.get("node_id")}


def _result(ref, timeout_s: float = CALL_TIMEOUT_S):
    """A shard call's value; its HubError (bad camera, unknown id) as itself, a dead shard as 503."""
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, HubError):
            raise cause from None
        raise
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
        raise NotReady(f"stream shard unavailable: {exc}") from exc
