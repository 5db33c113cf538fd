"""The ``auditlens`` command line, one typer app: ``audit``, ``harvest``, ``mcp``,
``agent scripted``, ``probes ...``, ``organisms ...``, ``bench ...`` and ``cache ...``.

Exit codes: 0 success; 2 a user error (one line on stderr: bad arguments, missing or corrupt
files, an unwritable ``--out``, a locked ``--out``); 130 interrupted (Ctrl-C: "interrupted;
rerun to resume"); 1 a bug (one line naming the exception; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn

import typer

from auditlens.cli import agent, audit, bench, cache, probes
from auditlens.cli._common import STATE, app
from auditlens.errors import AuditlensError
from auditlens.testbed.cli import organisms_app

__all__ = ["EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "app", "main"]

_COMMANDS = (agent, audit, bench, cache, probes)  # imported for their commands
app.add_typer(organisms_app, name="organisms")

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
_ENVIRONMENT_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST,
    errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG,
}  # fmt: skip
"""OS errors caused by the user's files or disk (exit 2), not by a bug."""


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    sys.exit(code)


def _interrupted() -> NoReturn:
    _fail("interrupted; rerun to resume (finished steps are cached)", EXIT_INTERRUPTED)


def _caused_by_interrupt(err: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def main() -> None:
    """Entry point: run the app and map every outcome to one line and an honest exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(standalone_mode=False)
    except AuditlensError as err:
        if STATE["debug"]:
            raise
        _fail(f"error: {err}", EXIT_USER_ERROR)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.TyperException as err:  # bad usage: typer's own message (click's, vendored)
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {err.format_message()}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as err:
        if STATE["debug"]:
            raise
        if err.errno in _ENVIRONMENT_ERRNOS:
            _fail(f"error: {err}", EXIT_USER_ERROR)
        _fail(f"error: unexpected {type(err).__name__}: {err} (rerun with --debug)", EXIT_BUG)
    except Exception as err:
        if _caused_by_interrupt(err):  # a library wrapped the KeyboardInterrupt
            _interrupted()
        if STATE["debug"]:
            raise
        text = str(err).splitlines()[0] if str(err) else ""
        _fail(
            f"error: internal error ({type(err).__name__}: {text[:300]}); this is a bug in "
            "auditlens: rerun with --debug for the traceback and report it",
            EXIT_BUG,
        )
    # typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns the code.
    if code == EXIT_INTERRUPTED:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)
