"""The `hub` command line: the top floor, allowed to import every layer (see pyproject.toml)."""
