"""The audit's output folder: checked writable before any model loads, and locked while an
audit writes it.

:func:`check_out_dir` refuses an ``--out`` that is a file or cannot be written (one line,
before the minutes of work). :class:`OutLock` holds ``OUT/.auditlens.lock`` (an advisory
``flock`` on a file holding the holder's pid) for the length of an audit: a second audit into
the same folder is refused with the holder's pid. The kernel drops the lock when its process
dies, so a lock file left by a killed audit is taken over by the next one.
"""

from __future__ import annotations

import errno
import os
import socket
import uuid
from pathlib import Path
from types import TracebackType

from auditlens.errors import AuditlensError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, the pid file still helps
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "OutDirError", "OutLock", "check_out_dir"]

LOCK_NAME = ".auditlens.lock"
_HELD: dict[str, int] = {}
"""Locks this process holds (resolved path -> depth): the CLI locks before loading the models
and ``audit()`` locks again inside; flock would refuse the second open file."""


class OutDirError(AuditlensError):
    """An output folder that is a file, cannot be written, or is locked by another audit."""


def check_out_dir(path: str | Path, *, create: bool = True) -> Path:
    """``path`` as a folder this process can write (created if missing, when ``create``).

    Writes and removes a probe file, so permissions, read-only mounts and full disks are all
    found here rather than after the models load.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutDirError(f"output folder {str(out)!r} is an existing file, not a folder")
    parent = next((p for p in (out, *out.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutDirError(f"cannot create output folder {str(out)!r}: {str(parent)!r} is a file")
    if not create and not out.exists():
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise OutDirError(f"output folder {str(out)!r} is not writable: {reason}") from err
    return out


def _holder(text: str) -> str:
    parts = dict(p.split("=", 1) for p in text.split() if "=" in p)
    pid, host = parts.get("pid", "?"), parts.get("host", "?")
    return f"pid {pid}" + (f" on {host}" if host != socket.gethostname() else "")


class OutLock:
    """An exclusive lock on an output folder while an audit writes it (a context manager).

    Acquiring raises :class:`OutDirError` naming the holder's pid if another live process
    holds it. Released (and the lock file removed) on exit, including on Ctrl-C.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def _id(self) -> str:
        return str(self.path.resolve())

    def acquire(self) -> OutLock:
        if self._id in _HELD:
            _HELD[self._id] += 1
            self._fd = -1
            return self
        for _ in range(5):  # retry if the holder removed the file between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                try:
                    holder = _holder(self.path.read_text())
                except OSError:
                    holder = "another process"
                raise OutDirError(
                    f"output folder {str(self.path.parent)!r} is being written by another "
                    f"audit ({holder}); wait for it to finish or choose another --out"
                ) from err
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its last holder had already unlinked
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode())
            self._fd = fd
            _HELD[self._id] = 1
            return self
        raise OutDirError(f"could not lock output folder {str(self.path.parent)!r}")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        depth = _HELD.get(self._id, 1) - 1
        if depth > 0:
            _HELD[self._id] = depth
            return
        _HELD.pop(self._id, None)
        if fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> OutLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
