"""`hub streams add|list|get|remove` and `hub events list|tail`: talk HTTP to a running hub.

    hub streams add cam17 rtsp://10.0.0.17/s1 --zone kerb:0,0.7,1,0.7,1,1,0,1 --parking kerb:180
    hub streams add lot "{shared_dir}/data/video/parking-lot-overhead.mp4" --loop --spec lot.yaml
    hub streams list
    hub streams calibrate cam17.yaml snapshot.jpg --out grid.jpg   # check a calibration by eye
    hub events tail --camera cam17          # Server-Sent Events, one JSON line per event
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

streams = typer.Typer(help="Cameras analysed by a running hub (see, track, zones, rules).", no_args_is_help=True)
events = typer.Typer(help="Events (illegal parking, spills) stored by a running hub.", no_args_is_help=True)

URL = typer.Option(None, "--url", envvar="HUB_URL", show_default=False,
                   help="the running hub (default: the one `hub serve` started here, else http://127.0.0.1:8000)")
API_KEY = typer.Option(None, "--api-key", envvar="HUB_CLIENT_API_KEY", help="Bearer key when the hub needs one")


def _client(url: str | None, api_key: str | None, timeout_s: float | None = 130.0):
    import httpx

    from cli.commands._client import DEFAULT_URL, running_hub

    url = url or getattr(running_hub(), "url", DEFAULT_URL)

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)


def _check(resp) -> dict | list:
    try:
        body = resp.json()
    except ValueError:
        body = {"error": {"message": resp.text[:500]}}
    if resp.status_code >= 400:
        message = body.get("error", {}).get("message", resp.text[:500]) if isinstance(body, dict) else str(body)
        typer.echo(f"error {resp.status_code}: {message}", err=True)
        raise typer.Exit(2)
    return body


def _request(method: str, url: str, api_key: str | None, path: str, **kwargs):
    import httpx

    try:
        with _client(url, api_key) as client:
            return _check(client.request(method, path, **kwargs))
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the hub at {url}: {exc}", err=True)
        raise typer.Exit(2) from exc


def parse_zone(text: str) -> dict:
    """`id:x1,y1,x2,y2,...` — values all <= 1 are taken as normalised."""
    zone_id, _, coords = text.partition(":")
    values = [float(v) for v in coords.split(",") if v.strip()]
    if not zone_id or len(values) < 6 or len(values) % 2:
        raise typer.BadParameter(f"zone {text!r}: expected id:x1,y1,x2,y2,x3,y3[,...]")
    points = [[values[i], values[i + 1]] for i in range(0, len(values), 2)]
    return {"zone_id": zone_id, "points": points, "normalized": all(0 <= v <= 1 for v in values)}


def _rule(text: str, kind: str, key: str) -> dict:
    zone_id, _, seconds = text.partition(":")
    out = {"kind": kind, "zone_id": zone_id}
    if seconds:
        out[key] = float(seconds)
    return out


@streams.command("add")
def add(
    camera_id: str,
    source: str = typer.Argument(..., help="rtsp://, http(s):// or a video file on the hub's machine"),
    fps: float = typer.Option(5.0, "--fps", help="analysis frames per second"),
    loop: bool = typer.Option(False, help="loop a video file"),
    zone: list[str] = typer.Option([], help="id:x1,y1,x2,y2,... (repeatable; <=1 means normalised)"),
    parking: list[str] = typer.Option([], help="zone_id[:min_dwell_s] — illegal-parking rule (repeatable)"),
    spill: list[str] = typer.Option([], help="zone_id[:min_s] — debris/spill rule (repeatable)"),
    rename: list[str] = typer.Option([], help="detector class=vehicle class, e.g. 'cell phone=car'"),
    model: str = typer.Option(None, help="a registered detector, e.g. models:/overhead-cars@champion"),
    webhook: list[str] = typer.Option([], help="POST each event here (repeatable)"),
    spec: Path = typer.Option(None, help="YAML/JSON file with more camera fields (merged under the flags)"),
    url: str = URL,
    api_key: str = API_KEY,
) -> None:
    """Add a camera with its zones and rules."""
    body: dict = {}
    if spec is not None:
        import yaml

        body = yaml.safe_load(spec.read_text()) or {}
    body.update(camera_id=camera_id, url=source, analysis_fps=fps)
    if loop:
        body["loop"] = True
    if zone:
        body["zones"] = [*body.get("zones", []), *(parse_zone(z) for z in zone)]
    rules = [*(_rule(p, "illegal_parking", "min_dwell_s") for p in parking), *(_rule(s, "spill", "min_s") for s in spill)]
    if rules:
        body["rules"] = [*body.get("rules", []), *rules]
    if rename:
        pairs = dict(r.split("=", 1) for r in rename)
        body["classes"] = {**body.get("classes", {}), "rename": pairs}
    if model:
        body["model"] = model
    if webhook:
        body["webhooks"] = [*body.get("webhooks", []), *webhook]
    typer.echo(json.dumps(_request("POST", url, api_key, "/v1/streams", json=body), indent=2))


@streams.command("list")
def list_streams(as_json: bool = typer.Option(False, "--json"), url: str = URL, api_key: str = API_KEY) -> None:
    """Cameras with state, analysed fps and drops."""
    rows = _request("GET", url, api_key, "/v1/streams")["streams"]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['camera_id']:20s} {r['state']:12s} fps={r['fps']:5.1f} analysed={r['frames_analysed']:7d} "
                   f"skipped={r['frames_skipped']:6d} dropped={r['frames_dropped']:5d} events={r['events']:4d} "
                   f"{r['last_error'] or ''}")


@streams.command("get")
def get(camera_id: str, url: str = URL, api_key: str = API_KEY) -> None:
    """One camera's state and counters."""
    typer.echo(json.dumps(_request("GET", url, api_key, f"/v1/streams/{camera_id}"), indent=2))


@streams.command("remove")
def remove(camera_id: str, url: str = URL, api_key: str = API_KEY) -> None:
    """Stop analysing a camera."""
    _request("DELETE", url, api_key, f"/v1/streams/{camera_id}")
    typer.echo(f"removed {camera_id}")


@streams.command("calibrate")
def calibrate(
    spec: Path = typer.Argument(..., help="camera config (YAML/JSON) with `calibration`, or a streams config"),
    snapshot: Path = typer.Argument(..., help="a frame of that camera: an image, or a video (its first frame)"),
    out: Path = typer.Option(Path("calibration-grid.jpg"), "--out", help="where to write the overlay"),
    camera: str = typer.Option(None, help="camera_id, when SPEC is a streams config with several cameras"),
    spacing_m: float = typer.Option(5.0, "--spacing-m", help="grid spacing on the road, metres"),
) -> None:
    """Draw the camera's calibrated road grid on a snapshot: squares should look square on the road
    and lines should follow the lane markings (works offline, no hub needed)."""
    import cv2
    import yaml

    from hub.errors import HubError
    from pipelines.calibration import camera_calibration, draw_grid, read_snapshot

    try:
        cal = camera_calibration(yaml.safe_load(spec.read_text()) or {}, camera)
        overlay = draw_grid(read_snapshot(str(snapshot)), cal, spacing_m=spacing_m)
    except HubError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    if not cv2.imwrite(str(out), overlay):
        typer.echo(f"error: cannot write {out}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {out}")


@events.command("list")
def list_events(camera: str = typer.Option(None), rule: str = typer.Option(None),
                since: str = typer.Option(None, help="Unix seconds or ISO-8601"), limit: int = 50,
                url: str = URL, api_key: str = API_KEY) -> None:
    """Stored events, newest first, one JSON object per line."""
    params = {k: v for k, v in {"camera_id": camera, "rule": rule, "since": since, "limit": limit}.items() if v}
    for event in _request("GET", url, api_key, "/v1/events", params=params)["events"]:
        typer.echo(json.dumps(event))


@events.command("tail")
def tail(camera: str = typer.Option(None), rule: str = typer.Option(None),
         after_seq: int = typer.Option(None, help="replay stored events after this feed position"),
         max_events: int = typer.Option(0, help="stop after this many events (0: follow forever)"),
         max_backoff_s: float = typer.Option(30.0, help="longest pause between reconnection attempts"),
         url: str = URL, api_key: str = API_KEY) -> None:
    """Follow new events live (Server-Sent Events); one JSON object per line. A broken connection
    (hub restart, proxy, network) is resumed from the last event received, with `Last-Event-ID`."""
    import time

    import httpx

    follower = EventFollower(camera, rule, after_seq, max_events)
    backoff_s = 1.0
    try:
        while not follower.done:
            try:
                with _client(url, api_key, timeout_s=None) as client:
                    follower.follow(client)
                backoff_s = 1.0  # the stream ended cleanly (hub shutting down): reconnect soon
            except httpx.HTTPError as exc:
                typer.echo(f"event stream from {url} broke ({exc}); reconnecting in {backoff_s:.0f} s", err=True)
                time.sleep(backoff_s)
                backoff_s = min(max_backoff_s, backoff_s * 2)
    except KeyboardInterrupt:
        return


class EventFollower:
    """One `hub events tail`: remembers the last event id so that a new connection resumes there."""

    def __init__(self, camera: str | None, rule: str | None, after_seq: int | None, max_events: int,
                 echo=None) -> None:
        self.params = {k: v for k, v in {"camera_id": camera, "rule": rule}.items() if v is not None}
        self.last_seq = after_seq
        self.max_events = max_events
        self.seen = 0
        self.echo = echo or (lambda event: typer.echo(json.dumps(event), nl=True))

    @property
    def done(self) -> bool:
        return bool(self.max_events) and self.seen >= self.max_events

    def follow(self, client) -> None:
        headers = {"Last-Event-ID": str(self.last_seq)} if self.last_seq is not None else {}
        with client.stream("GET", "/v1/events/stream", params=self.params, headers=headers) as resp:
            if resp.status_code >= 400:
                resp.read()
                _check(resp)  # a refusal (bad key, bad filter) is final: no reconnecting
            for event in iter_sse(resp.iter_lines(), on_id=self._moved):
                self.echo(event)
                self.seen += 1
                if self.done:
                    return

    def _moved(self, event_id: str) -> None:
        if event_id.isdigit():
            self.last_seq = int(event_id)


def iter_sse(lines, on_id=None):
    """Parse Server-Sent Events lines into the JSON `data` of each event; `on_id(text)` hears every
    `id:` field, also those of heartbeats that carry no data (they move the resume position)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield json.loads("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("id:") and on_id is not None:
            on_id(line[3:].strip())


@events.command("deadletters")
def dead_letters(receiver: str = typer.Option(None, "--receiver", help="only this webhook URL"), limit: int = 100,
                 url: str = URL, api_key: str = API_KEY) -> None:
    """Webhook deliveries the hub gave up on (a final 4xx answer, or every retry failed)."""
    params = {"limit": limit, **({"url": receiver} if receiver else {})}
    for row in _request("GET", url, api_key, "/v1/events/deadletters", params=params)["dead_letters"]:
        typer.echo(json.dumps(row))


@events.command("replay")
def replay(delivery: list[int] = typer.Option([], "--id", help="a dead letter's id (repeatable)"),
           receiver: str = typer.Option(None, "--receiver", help="every dead letter of this webhook URL"),
           all_: bool = typer.Option(False, "--all", help="every dead letter"),
           url: str = URL, api_key: str = API_KEY) -> None:
    """Send dead-lettered webhook deliveries again, in their original order."""
    if not (delivery or receiver or all_):
        typer.echo("error: name --id, --receiver or --all", err=True)
        raise typer.Exit(2)
    body = {**({"ids": delivery} if delivery else {}), **({"url": receiver} if receiver else {})}
    typer.echo(f"replayed {_request('POST', url, api_key, '/v1/events/deadletters/replay', json=body)['replayed']}")


def register(app: typer.Typer) -> None:
    app.add_typer(streams, name="streams")
    app.add_typer(events, name="events")
