"""The `hub` command. Each group of commands lives in `cli/commands/<name>.py` and exposes
`register(app)`; heavy imports happen inside the command bodies so `hub --help` stays fast.

    hub serve                      # local Ray + Serve with the embedded defaults
    hub models bootstrap|list|promote|rollback|register
    hub see IMAGE --json
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ezhou AI capability hub.")


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="also print Ray and MLflow log lines")) -> None:
    from cli.commands._output import set_verbose

    set_verbose(verbose)


# Order here is the order in `hub --help`.
COMMAND_MODULES = ("serve", "models", "see", "streams", "review", "read", "listen", "speak", "hotline", "reason",
                   "train")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cli.commands.{name}":
                continue  # that command group is not part of this build
            raise
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
