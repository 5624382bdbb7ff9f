"""How long a slow webhook receiver holds up the others: one sender thread that sends each event
to every receiver in turn (what the hub had before issue 13) against one sender per receiver
(`WebhookSender`), same run, same receivers on 127.0.0.1.

    .venv/bin/python bench/webhook_fanout.py --events 20 --slow-s 0.5 --fast 3

Prints, for each mode, the seconds until every fast receiver has every event, and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from hub.outbound import OutboundPolicy
from pipelines.events import EventStore
from pipelines.rules.base import Event
from pipelines.webhooks import WebhookPolicy, WebhookSender


def receiver(delay_s: float) -> tuple[ThreadingHTTPServer, list[int]]:
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            count[0] += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def run(per_receiver: bool, events: int, slow_s: float, fast: int) -> float:
    servers = [receiver(slow_s)] + [receiver(0.0) for _ in range(fast)]
    urls = [f"http://127.0.0.1:{s.server_address[1]}/hook" for s, _ in servers]
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(Path(tmp))
        sender = WebhookSender(store, WebhookPolicy(timeout_s=30.0, poll_s=0.01),
                               outbound=OutboundPolicy(allow=("127.0.0.1/32",), webhook_http=True))
        for i in range(events):
            store.record(Event(f"e{i}", "cam1", "illegal_parking", "kerb", i, float(i), None, (0, 0, 10, 10), 0.9),
                         webhooks=urls)
        started = time.perf_counter()
        if per_receiver:
            sender.start()
        else:
            threading.Thread(target=one_sender_for_all, args=(sender, urls, events), daemon=True).start()
        while any(count[0] < events for _, count in servers[1:]):
            time.sleep(0.005)
        took = time.perf_counter() - started
        while servers[0][1][0] < events:  # let the slow one finish too before the store closes
            time.sleep(0.05)
        time.sleep(0.1)
        sender.stop(timeout_s=1.0)
        store.close()
    for server, _ in servers:
        server.shutdown()
        server.server_close()
    return took


def one_sender_for_all(sender: WebhookSender, urls: list[str], events: int) -> None:
    """The old loop: every event to every receiver in turn, on one thread and one client."""
    with httpx.Client(timeout=30.0) as client:
        for _ in range(events):
            for url in urls:
                head = sender.queue.head(url)
                if head is not None:
                    sender.attempt(client, head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--slow-s", type=float, default=0.5, help="seconds the slow receiver takes per request")
    parser.add_argument("--fast", type=int, default=3, help="number of fast receivers")
    args = parser.parse_args()
    shared = run(False, args.events, args.slow_s, args.fast)
    per_receiver = run(True, args.events, args.slow_s, args.fast)
    print(f"{args.events} events, 1 receiver taking {args.slow_s} s + {args.fast} fast receivers")
    print(f"one sender for all receivers: fast receivers complete after {shared:.2f} s")
    print(f"one sender per receiver:      fast receivers complete after {per_receiver:.2f} s")
    print(f"ratio: {shared / per_receiver:.0f}x")


if __name__ == "__main__":
    main()
