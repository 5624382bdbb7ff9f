"""`hub events review|reviews|export`: ops reviews of events, and reviewed events as training data.

    hub events review 9f2c... reject --note "a delivery van, allowed there"
    hub events reviews --state rejected --camera cam17
    hub events export reviewed/ --reviewed --format yolo      # then: hub train see --data reviewed/data.yaml
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.commands.streams import API_KEY, URL, _request, events


@events.command("review")
def review(event_id: str, action: str = typer.Argument(..., help="confirm | reject (a false alarm)"),
           note: str = typer.Option(None, help="why, e.g. 'shadow of the lamp post'"),
           url: str = URL, api_key: str = API_KEY) -> None:
    """Confirm an event or reject it as a false alarm (the latest review wins)."""
    body = _request("POST", url, api_key, f"/v1/events/{event_id}/review", json={"action": action, "note": note})
    r = body["review"]
    typer.echo(f"{event_id}: {r['verdict']} by {r['reviewer'] or '-'}" + (f" ({r['note']})" if r["note"] else ""))


@events.command("reviews")
def reviews(state: str = typer.Option(None, help="unreviewed | confirmed | rejected | reviewed"),
            camera: str = typer.Option(None), rule: str = typer.Option(None),
            since: str = typer.Option(None), limit: int = 100, as_json: bool = typer.Option(False, "--json"),
            url: str = URL, api_key: str = API_KEY) -> None:
    """Events with their review state."""
    params = {k: v for k, v in {"review": state, "camera_id": camera, "rule": rule, "since": since,
                                "limit": limit}.items() if v is not None}
    rows = _request("GET", url, api_key, "/v1/reviews", params=params)["events"]
    for e in rows:
        if as_json:
            typer.echo(json.dumps(e, ensure_ascii=False))
            continue
        r = e.get("review") or {}
        model = e.get("model") or {}
        typer.echo(f"{e['event_id']}  {e['camera_id']:12s} {e['rule']:16s} {r.get('verdict', 'unreviewed'):10s} "
                   f"{model.get('name', '-')}/{model.get('version', '-')}  {r.get('note') or ''}")


@events.command("export")
def export(out: Path = typer.Argument(..., help="output folder of the dataset"),
           reviewed: bool = typer.Option(False, "--reviewed", help="export reviewed events (required)"),
           fmt: str = typer.Option("yolo", "--format", help="yolo"),
           names: str = typer.Option(None, help="class names in order, e.g. car,truck (default: the confirmed ones)"),
           camera: str = typer.Option(None), rule: str = typer.Option(None), since: str = typer.Option(None),
           limit: int = typer.Option(10_000, min=1, max=10_000),
           url: str = URL, api_key: str = API_KEY) -> None:
    """Write reviewed events as a YOLO dataset: confirmed -> labelled images, rejected -> relabel/."""
    import httpx

    from cli.commands.streams import _client
    from hub.errors import HubError, NotFound
    from training.see.reviewed import export_yolo

    if not reviewed or fmt != "yolo":
        typer.echo("error: only `--reviewed --format yolo` is supported", err=True)
        raise typer.Exit(2)
    params = {k: v for k, v in {"review": "reviewed", "camera_id": camera, "rule": rule, "since": since,
                                "limit": limit}.items() if v is not None}
    rows = _request("GET", url, api_key, "/v1/reviews", params=params)["events"]
    with _client(url, api_key) as client:
        def fetch(event_id: str) -> bytes:
            resp = client.get(f"/v1/events/{event_id}/frame.jpg")
            if resp.status_code == 404:
                raise NotFound(resp.text[:200])
            resp.raise_for_status()
            return resp.content

        try:
            summary = export_yolo(rows, fetch, out, names=[n.strip() for n in names.split(",")] if names else None)
        except (HubError, httpx.HTTPError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(f"{out}/data.yaml: {summary.train} train, {summary.val} val images of {list(summary.names)}; "
               f"{summary.relabel} rejected to relabel; {len(summary.skipped)} skipped")


def register(app: typer.Typer) -> None:
    """The commands join the `events` group that `cli.commands.streams` registers."""
