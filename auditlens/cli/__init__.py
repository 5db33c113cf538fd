"""The ``auditlens`` command line, one typer app: ``audit``, ``harvest``, ``mcp``,
``agent scripted``, ``probes ...``, ``organisms ...`` and ``bench testbed``.

User errors print one line on stderr and exit with code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import click
import typer

from auditlens.cli import agent, audit, bench, probes
from auditlens.cli._common import STATE, app, console
from auditlens.errors import AuditlensError
from auditlens.testbed.cli import organisms_app

__all__ = ["app", "main"]

_COMMANDS = (agent, audit, bench, probes)  # imported for their commands
app.add_typer(organisms_app, name="organisms")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except AuditlensError as err:
        if STATE["debug"]:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except click.exceptions.ClickException as err:
        err.show()
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
