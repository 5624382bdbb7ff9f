"""Command groups of the `hub` CLI; each module has `register(app: typer.Typer)`."""
