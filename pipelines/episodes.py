"""Episodes that end with a reason, and continue across a restart — around the rules, not in them.

The rules keep their state in memory; the event store keeps every episode that started and has not
ended (camera, rule, zone, box). A camera worker puts one `EpisodeLedger` between its rules and
its sink:

- **restart**: at start the ledger loads the camera's open episodes from the store ("carried").
  When a rule fires a new episode of the same rule and zone whose box matches a carried one (IoU
  or the bottom-centre distance), it is that episode continuing: nothing new is emitted, and the
  rule's later `ended` is written under the carried `event_id`. Exactly one event for a vehicle
  that stayed parked while the hub restarted. A carried episode nothing matched within the rule's
  dwell time (plus grace) ends as `restart_unmatched`.
- **reasons**: the rule's own end is `left`; the worker ends what is open when the camera is removed
  (`camera_removed`) or its stream ends (`stream_ended`); an episode open longer than
  `max_episode_s` (wall clock) ends as `expired` (the rule's own later end is then ignored: the
  store writes each phase once).

>>> ledger = EpisodeLedger("cam17", rules, store, max_episode_s=86_400)
>>> for event, reason in ledger.process(rule_events, ts_s=frame.ts_s):
...     sink.emit(event, frame, end_reason=reason)
>>> ledger.close("camera_removed")      # the ended events to emit
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipelines.events import EventStore
from pipelines.rules.base import Event

log = logging.getLogger(__name__)
MATCH_IOU = 0.3
MATCH_PX = 40.0  # bottom-centre distance that still counts as "the same parked vehicle"
MATCH_SLACK_S = 10.0  # beyond the rule's dwell + grace before a carried episode is given up


@dataclass
class _Open:
    started: Event
    opened_wall: float
    carried: bool = False  # started before this worker did (loaded from the store)
    deadline_ts: float | None = None  # carried: video time by which a rule must have re-fired it


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_object(a: Sequence[float], b: Sequence[float], max_px: float = MATCH_PX) -> bool:
    """Two boxes of one object seen at two times: overlapping enough, or standing on the same spot."""
    foot_a, foot_b = ((a[0] + a[2]) / 2, a[3]), ((b[0] + b[2]) / 2, b[3])
    return iou(a, b) >= MATCH_IOU or math.dist(foot_a, foot_b) <= max_px


def rule_wait_s(rules: Sequence, zone_id: str) -> float:
    """How long after a restart a rule of this zone needs to fire again: its dwell and grace."""
    waits = [float(getattr(r, "min_dwell_s", None) or getattr(r, "min_s", None) or 60.0)
             + float(getattr(r, "exit_grace_s", 0.0) or 0.0)
             for r in rules if getattr(getattr(r, "zone", None), "zone_id", None) == zone_id]
    return max(waits, default=60.0) + MATCH_SLACK_S


class EpisodeLedger:
    """Open episodes of one camera (this run's and those carried over a restart). One worker thread."""

    def __init__(self, camera_id: str, rules: Sequence, store: EventStore | None = None, *,
                 max_episode_s: float | None = None) -> None:
        self.camera_id = camera_id
        self.rules = list(rules)
        self.max_episode_s = max_episode_s
        self.open: dict[str, _Open] = {}
        self.alias: dict[str, str] = {}  # rule's new event_id -> the carried event_id it continues
        self.last_ts: float | None = None
        self.continued = 0
        if store is not None:
            for stored in store.open_events(camera_id):
                self.open[stored.event.event_id] = _Open(stored.event, stored.created_wall, carried=True)
            if self.open:
                log.info("camera %s: %d open episodes carried over from before the restart", camera_id, len(self.open))

    def process(self, events: Sequence[Event], ts_s: float,
                now_wall: float | None = None) -> list[tuple[Event, str | None]]:
        """The rules' events of one frame -> (event to emit, end reason) pairs, plus ends that
        became due (`restart_unmatched`, `expired`)."""
        now = time.time() if now_wall is None else now_wall
        if self.last_ts is None:  # first frame: carried episodes get until their rule could re-fire
            for ep in self.open.values():
                if ep.carried:
                    ep.deadline_ts = ts_s + rule_wait_s(self.rules, ep.started.zone_id)
        self.last_ts = ts_s
        out: list[tuple[Event, str | None]] = []
        for event in events:
            if event.phase == "started":
                out.extend(self._started(event, now))
            else:
                out.extend(self._ended(event))
        out.extend(self._due(ts_s, now))
        return out

    def close(self, reason: str) -> list[tuple[Event, str | None]]:
        """End every open episode with `reason` (the camera was removed, its stream ended)."""
        out = [(self._end_of(ep), reason) for ep in self.open.values()]
        self.open.clear()
        self.alias.clear()
        return out

    # -- internals ----------------------------------------------------------------------------
    def _started(self, event: Event, now: float) -> list[tuple[Event, str | None]]:
        for event_id, ep in self.open.items():
            if ep.carried and ep.started.rule == event.rule and ep.started.zone_id == event.zone_id \
                    and same_object(ep.started.bbox, event.bbox):
                self.alias[event.event_id] = event_id
                ep.carried, ep.deadline_ts = False, None  # matched: from now on an episode of this run
                self.continued += 1
                log.info("camera %s: episode %s continues after the restart (rule fired it again as %s)",
                         self.camera_id, event_id, event.event_id)
                return []
        self.open[event.event_id] = _Open(event, now)
        return [(event, None)]

    def _ended(self, event: Event) -> list[tuple[Event, str | None]]:
        event_id = self.alias.pop(event.event_id, event.event_id)
        ep = self.open.pop(event_id, None)
        if ep is None and event_id != event.event_id:
            return []  # a continued episode that already ended (expired)
        if ep is not None and event_id != event.event_id:
            event = replace(event, event_id=event_id, started_ts=ep.started.started_ts, fired_ts=ep.started.fired_ts)
        return [(event, "left")]

    def _due(self, ts_s: float, now: float) -> list[tuple[Event, str | None]]:
        out = []
        for event_id, ep in list(self.open.items()):
            if ep.carried and ep.deadline_ts is not None and ts_s > ep.deadline_ts:
                reason = "restart_unmatched"
            elif self.max_episode_s is not None and now - ep.opened_wall > self.max_episode_s:
                reason = "expired"
            else:
                continue
            del self.open[event_id]
            out.append((self._end_of(ep), reason))
        return out

    def _end_of(self, ep: _Open) -> Event:
        started = ep.started
        # A carried episode's video clock was another session's: end it at its own last known time.
        ended_ts = (started.fired_ts or started.started_ts) if ep.carried or self.last_ts is None else self.last_ts
        return replace(started, phase="ended", ended_ts=ended_ts)
