"""One webhook receiver for the tests (unit, security and through the running hub): an HTTP server
on 127.0.0.1 whose answer to each POST is a function of that request.

    receiver = WebhookReceiver(lambda req: 410 if req.n > 2 else 204, keep=lambda body: body["event_id"])
    ... deliver to receiver.url ...
    receiver.received, receiver.attempts, receiver.requests[0].headers
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Posted:
    n: int  # 1-based count of requests this receiver got
    body: bytes
    headers: dict[str, str]


class WebhookReceiver:
    """`answer(posted) -> status`; `keep(parsed body)` of every 2xx answer goes to `received`; every
    request is in `requests`. `hold` (an Event) makes each request wait until it is set."""

    def __init__(self, answer: Callable[[Posted], int], *, keep: Callable[[Any], Any] = lambda body: body,
                 hold: threading.Event | None = None) -> None:
        self.answer = answer  # a test may change it midway (a receiver that is fixed)
        self.received: list[Any] = []
        self.requests: list[Posted] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hold is not None:
                    hold.wait(60)
                with lock:
                    posted = Posted(len(receiver.requests) + 1, body, dict(self.headers))
                    receiver.requests.append(posted)
                    status = receiver.answer(posted)
                    if 200 <= status < 300:
                        receiver.received.append(keep(json.loads(body)))
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
