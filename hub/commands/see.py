"""`hub see IMAGE`: detect objects in an image with the `see` champion, in this process."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def see(
        image: Path = typer.Argument(..., exists=True, dir_okay=False, help="JPEG/PNG/BMP/WebP file"),
        classes: list[str] = typer.Option(None, "--class", "-c", help="keep only this class name (repeatable)"),
        min_score: float = typer.Option(0.25, "--min-score", min=0.0, max=1.0, help="drop weaker boxes"),
        as_json: bool = typer.Option(False, "--json", help="print the response as the API returns it"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
    ) -> None:
        """Print the detections in IMAGE (boxes in the image's pixels)."""
        from hub.errors import HubError
        from serving.local import predict_local

        request = {"image": image.read_bytes(), "classes": classes or None, "min_score": min_score}
        try:
            response = predict_local("see", request, model=model)
        except HubError as exc:
            typer.echo(f"error ({exc.status_code}): {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(response.model_dump(mode="json"), ensure_ascii=False, indent=2))
            return
        typer.echo(f"{image.name}: {response.image_width}x{response.image_height}, {len(response.detections)} objects")
        for d in response.detections:
            x1, y1, x2, y2 = d.xyxy
            typer.echo(f"  {d.class_name:<14} {d.score:.2f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
