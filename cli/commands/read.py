"""`hub read IMAGE`: OCR an image, and read a certificate's fields, with the `read` champion: a running hub's, or in this process."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from cli.commands._client import API_KEY, LOCAL, URL


class DocType(StrEnum):
    id_card = "id_card"
    business_licence = "business_licence"


def register(app: typer.Typer) -> None:
    @app.command()
    def read(
        image: Path = typer.Argument(..., exists=True, dir_okay=False, help="JPEG/PNG/BMP/WebP file"),
        doc_type: DocType = typer.Option(None, "--type", "-t", help="the certificate shown (default: detect it)"),
        as_json: bool = typer.Option(False, "--json", help="print the response as the API returns it"),
        model: str = typer.Option(None, help="models:/<name>@<alias> or /<version> (default: the champion)"),
        url: str = URL,
        api_key: str = API_KEY,
        local: bool = LOCAL,
    ) -> None:
        """Print the text lines in IMAGE and, for an ID card or business licence, its fields."""
        from cli.commands._local import answer_or_exit, echo_json

        request = {"image": image.read_bytes(), "document_type": doc_type.value if doc_type else None}
        response = answer_or_exit("read", request, model=model, url=url, api_key=api_key, local=local)
        if as_json:
            echo_json(response)
            return
        typer.echo(f"{image.name}: {len(response.lines)} lines, document type: {response.document_type or '-'}")
        for line in response.lines:
            typer.echo(f"  {line.score:.2f}  {line.text}")
        for key, field in response.fields.items():
            typer.echo(f"  {key:<24} {field.status:<16} {field.value if field.value is not None else '-'}")
