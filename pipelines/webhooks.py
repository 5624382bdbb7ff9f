"""Webhook delivery from the event store: one queue and one sender thread per receiver.

A slow or dead receiver only delays itself: every receiver URL has its own thread, its own HTTP
client and its own place in the store's `deliveries` table. Within one receiver deliveries go out
strictly in the order they were recorded (the head of its queue is retried until it is delivered
or dead-lettered), so a receiver always sees `started` before the `ended` of the same event.

Answers: 2xx delivered; 408 and 429 (and 5xx, network errors) retried with exponential back-off
(429/503 honour `Retry-After`); any other 3xx/4xx is final at once — the receiver said the request
itself is wrong (410 Gone: it never will be right). After `max_attempts` or a final answer a
delivery is **dead-lettered**: kept in the store with its last error, listed by `dead_letters()`
(`GET /v1/events/deadletters`, `hub events deadletters`) and sent again by `replay()`.

>>> sender = WebhookSender(store, WebhookPolicy(timeout_s=5)).start()
>>> sender.wake()                              # a new event was recorded
>>> DeliveryQueue(store).dead_letters()        # [{"id": 7, "url": ..., "last_error": "HTTP 410 (final)"}]
>>> DeliveryQueue(store).replay(url="https://ops.example/hook")
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from hub.backoff import backoff_s
from hub.errors import HubError
from hub.outbound import OutboundPolicy
from hub.redact import redact_text, redact_url
from pipelines.events import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventStore, sign_webhook

log = logging.getLogger(__name__)

RETRIED_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookPolicy:
    """Retry schedule of webhook deliveries (wall-clock: delivery is about the receiver, not video)."""

    timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    max_attempts: int = 20  # then the delivery is dead-lettered (visible, replayable)
    poll_s: float = 0.5
    idle_exit_s: float = 30.0  # a receiver's thread ends after this long with nothing queued
    max_receivers: int = 256  # threads at most; more receivers wait for a free one


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    url: str
    attempts: int
    next_attempt_wall: float
    payload: dict


@dataclass(frozen=True)
class Outcome:
    """What one attempt means: delivered, retry after `retry_after_s` (None: back-off), or final."""

    delivered: bool
    error: str | None = None
    final: bool = False
    retry_after_s: float | None = None


def classify(status_code: int, retry_after: str | None = None) -> Outcome:
    """The meaning of a receiver's HTTP answer (see the module docstring)."""
    if 200 <= status_code < 300:
        return Outcome(delivered=True)
    error = f"HTTP {status_code}"
    if status_code in RETRIED_4XX or status_code >= 500:
        return Outcome(delivered=False, error=error, retry_after_s=_retry_after_s(retry_after))
    return Outcome(delivered=False, error=f"{error} (final: not retried)", final=True)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class DeliveryQueue:
    """The `deliveries` table of an `EventStore`, read as one FIFO queue per receiver URL.

    Example: `q = DeliveryQueue(store); q.head(url); q.mark_delivered(d.delivery_id, time.time())`.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def receivers(self) -> list[str]:
        """Receiver URLs that have something queued (due now or later)."""
        rows = self.store.query("SELECT DISTINCT url FROM deliveries WHERE delivered_wall IS NULL AND failed = 0")
        return [r[0] for r in rows]

    def head(self, url: str) -> Delivery | None:
        """The oldest undelivered, not dead-lettered delivery of `url` (order is kept per receiver)."""
        rows = self.store.query(
            "SELECT d.id, d.url, d.attempts, d.next_attempt_wall, d.seq FROM deliveries d "
            "WHERE d.url = ? AND d.delivered_wall IS NULL AND d.failed = 0 ORDER BY d.id LIMIT 1", (url,))
        if not rows:
            return None
        delivery_id, url, attempts, next_wall, seq = rows[0]
        return Delivery(delivery_id, url, attempts, next_wall, self.store.feed_item(seq).to_dict())

    def mark_delivered(self, delivery_id: int, now_wall: float) -> None:
        self.store.execute("UPDATE deliveries SET delivered_wall=?, attempts=attempts+1 WHERE id=?",
                           (now_wall, delivery_id))

    def mark_attempt(self, delivery_id: int, error: str, next_attempt_wall: float | None) -> None:
        """Record a failed attempt; `next_attempt_wall=None` dead-letters the delivery."""
        self.store.execute(
            "UPDATE deliveries SET attempts=attempts+1, last_error=?, "
            "next_attempt_wall=COALESCE(?, next_attempt_wall), failed=? WHERE id=?",
            (error[:500], next_attempt_wall, int(next_attempt_wall is None), delivery_id))

    def dead_letters(self, url: str | None = None, limit: int = 100) -> list[dict]:
        """Dead-lettered deliveries, oldest first: what never reached its receiver, and why."""
        sql = ("SELECT d.id, d.url, d.attempts, d.last_error, d.next_attempt_wall, f.event_id, f.phase "
               "FROM deliveries d JOIN feed f ON f.seq = d.seq WHERE d.failed = 1")
        args: tuple = ()
        if url:
            sql, args = sql + " AND d.url = ?", (url,)
        rows = self.store.query(sql + " ORDER BY d.id LIMIT ?", (*args, max(1, min(int(limit), 10_000))))
        return [{"id": r[0], "url": redact_url(r[1]), "attempts": r[2], "last_error": r[3],
                 "last_attempt_wall": r[4], "event_id": r[5], "phase": r[6]} for r in rows]

    def replay(self, ids: list[int] | None = None, url: str | None = None, now_wall: float | None = None) -> int:
        """Queue dead-lettered deliveries again (all, those of `url`, or these `ids`); returns how many.
        They keep their place (id) in the receiver's queue, so they go out before newer ones."""
        sql = "UPDATE deliveries SET failed=0, attempts=0, next_attempt_wall=? WHERE failed=1"
        args: list = [time.time() if now_wall is None else now_wall]
        if url:
            sql += " AND url=?"
            args.append(url)
        if ids is not None:
            if not ids:
                return 0
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            args.extend(int(i) for i in ids)
        return self.store.execute(sql, tuple(args))

    def counts(self) -> dict[str, int]:
        return self.store.delivery_counts()


class WebhookSender:
    """Delivers queued deliveries as signed JSON POSTs: a dispatcher thread starts one sender
    thread per receiver with work; each keeps its receiver's order and back-off.

    Every delivery carries `X-Hub-Timestamp` and `X-Hub-Signature-256` (see `sign_webhook`), with
    the receiver's own secret (`set_secret`) or the hub-wide `default_secret`. Each attempt checks
    the receiver against the outbound policy again (a name that now resolves to a private address
    is refused and the delivery dead-lettered).
    It keeps no state of its own: after a restart a new sender picks up what the store says is due.
    Example: `sender = WebhookSender(store, default_secret=key).start(); ...; sender.stop()`.
    """

    def __init__(self, store: EventStore, policy: WebhookPolicy | None = None, *,
                 outbound: OutboundPolicy | None = None, default_secret: str = "") -> None:
        self.store = store
        self.queue = DeliveryQueue(store)
        self.policy = policy or WebhookPolicy()
        self.outbound = outbound or OutboundPolicy()
        self.default_secret = default_secret
        self._secrets: dict[str, str] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: dict[str, _ReceiverThread] = {}
        self._lock = threading.Lock()

    def start(self) -> WebhookSender:
        self._thread = threading.Thread(target=self._dispatch, name="webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending. An attempt in flight finishes (bounded by the policy's timeout) or its
        delivery stays queued in the store for the next start; nothing is lost either way."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.wake.set()
        for thread in [self._thread, *(w.thread for w in workers)]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def receivers(self) -> dict[str, bool]:
        """Receiver URL (redacted) -> whether its sender thread runs now."""
        with self._lock:
            return {redact_url(u): w.thread.is_alive() for u, w in self._workers.items()}

    def set_secret(self, url: str, secret: str | None) -> None:
        """The HMAC key for one receiver (None: the default key)."""
        if secret:
            self._secrets[url] = secret
        else:
            self._secrets.pop(url, None)

    def wake(self) -> None:
        """A new event was recorded: look now rather than at the next poll."""
        self._wake.set()

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                for url in self.queue.receivers():
                    self._ensure_worker(url)
            except Exception:  # a store hiccup must not kill delivery for good
                log.exception("webhook dispatch round failed")
            self._wake.wait(self.policy.poll_s)
            self._wake.clear()

    def _ensure_worker(self, url: str) -> None:
        with self._lock:
            worker = self._workers.get(url)
            if worker is not None and worker.thread.is_alive():
                worker.wake.set()
                return
            self._workers = {u: w for u, w in self._workers.items() if w.thread.is_alive()}
            if len(self._workers) >= self.policy.max_receivers:
                return  # a thread will free up when some receiver's queue is empty
            worker = _ReceiverThread(self, url)
            self._workers[url] = worker
        worker.thread.start()

    def _post(self, client, url: str, payload: dict):
        self.outbound.check_webhook(url)
        body = json.dumps(payload, separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(ts),
                   "Idempotency-Key": f"{payload['event_id']}:{payload['phase']}"}
        secret = self._secrets.get(url, self.default_secret)
        if secret:
            headers[SIGNATURE_HEADER] = sign_webhook(secret, ts, body)
        return client.post(url, content=body, headers=headers)

    def attempt(self, client, delivery: Delivery) -> Outcome:
        """Send one delivery once and record the outcome in the store."""
        try:
            resp = self._post(client, delivery.url, delivery.payload)
            outcome = classify(resp.status_code, resp.headers.get("retry-after"))
        except HubError as exc:  # the outbound policy refuses the receiver: retrying will not help
            outcome = Outcome(delivered=False, error=exc.message, final=True)
        except Exception as exc:  # network errors of any kind: retry later
            outcome = Outcome(delivered=False, error=redact_text(f"{type(exc).__name__}: {exc}"))
        now = time.time()
        if outcome.delivered:
            self.queue.mark_delivered(delivery.delivery_id, now)
            return outcome
        tried = delivery.attempts + 1
        backoff = backoff_s(tried, self.policy.backoff_initial_s, self.policy.backoff_max_s)
        if outcome.retry_after_s is not None:
            backoff = min(self.policy.backoff_max_s, max(backoff, outcome.retry_after_s))
        dead = outcome.final or tried >= self.policy.max_attempts
        self.queue.mark_attempt(delivery.delivery_id, outcome.error or "failed", None if dead else now + backoff)
        log.warning("webhook %s for event %s %s failed (%s), attempt %d%s", redact_url(delivery.url),
                    delivery.payload["event_id"], delivery.payload["phase"], outcome.error, tried,
                    ": dead-lettered" if dead else "")
        return outcome

    def deliver_due(self, client, now_wall: float | None = None) -> int:
        """One synchronous round over every receiver: send each queue's due head until one is not
        delivered (order is kept). Returns how many were delivered. Used by tests and shutdown."""
        ok = 0
        for url in self.queue.receivers():
            while not self._stop.is_set():
                head = self.queue.head(url)
                if head is None or head.next_attempt_wall > (time.time() if now_wall is None else now_wall):
                    break
                outcome = self.attempt(client, head)
                ok += outcome.delivered
                if not outcome.delivered and not outcome.final:
                    break
        return ok


class _ReceiverThread:
    """The sender of one receiver: its head-of-queue, retried until delivered or dead-lettered."""

    def __init__(self, sender: WebhookSender, url: str) -> None:
        self.sender = sender
        self.url = url
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"webhook-{redact_url(url)[:40]}", daemon=True)

    def _run(self) -> None:
        import httpx

        sender, policy = self.sender, self.sender.policy
        idle_since = time.monotonic()
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
            while not sender._stop.is_set():
                try:
                    head = sender.queue.head(self.url)
                except Exception:
                    log.exception("webhook queue of %s unreadable", redact_url(self.url))
                    head = None
                if head is None:
                    if time.monotonic() - idle_since > policy.idle_exit_s:
                        return
                    self._wait(policy.poll_s)
                    continue
                idle_since = time.monotonic()
                wait_s = head.next_attempt_wall - time.time()
                if wait_s > 0:
                    self._wait(min(wait_s, policy.poll_s))
                    continue
                try:
                    sender.attempt(client, head)
                except Exception:  # the store closed under a slow attempt at shutdown: it stays queued
                    if not sender._stop.is_set():
                        log.exception("webhook attempt to %s failed to record", redact_url(self.url))

    def _wait(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()
