"""`hub see IMAGE`: detect objects in an image with the `see` champion: a running hub's, or in this process."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL


def register(app: typer.Typer) -> None:
    @app.command()
    def see(
        image: Path = typer.Argument(..., exists=True, dir_okay=False, help="JPEG/PNG/BMP/WebP file"),
        classes: list[str] = typer.Option(None, "--class", "-c", help="keep only this class name (repeatable)"),
        min_score: float = typer.Option(0.25, "--min-score", min=0.0, max=1.0, help="drop weaker boxes"),
        as_json: bool = typer.Option(False, "--json", help="print the response as the API returns it"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Print the detections in IMAGE (boxes in the image's pixels)."""
        from cli.commands._local import answer_or_exit, echo_json

        request = {"image": image.read_bytes(), "classes": classes or None, "min_score": min_score}
        response = answer_or_exit("see", request, model=model, url=url, api_key=api_key, local=local)
        if as_json:
            echo_json(response)
            return
        typer.echo(f"{image.name}: {response.image_width}x{response.image_height}, {len(response.detections)} objects")
        for d in response.detections:
            x1, y1, x2, y2 = d.xyxy
            typer.echo(f"  {d.class_name:<14} {d.score:.2f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
