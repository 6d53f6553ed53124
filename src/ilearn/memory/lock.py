"""One process per home folder: an exclusive lock on `<home>/ilearn.lock`, held while a memory is open.

Each process keeps its own vector index and applies the trust rules to what it admits (`ilearn.memory.trust`);
two processes on one home would each index and settle events the other does not see. The lock (``flock``,
released by the kernel when the process dies, so a crash never leaves it behind) makes the second process
fail at once with `HomeLocked`, naming the process that holds it. Memories of one process share the lock.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

from ilearn.errors import ILearnError

logger = logging.getLogger(__name__)

LOCK_NAME = "ilearn.lock"


class HomeLocked(ILearnError):
    """Another process has the deployment's home folder open (or the folder cannot be locked at all)."""


def os_reason(exc: OSError) -> str:
    """What an OSError means for a deployment, in a few words: disk full and read-only named as such."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; free some space"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"it is read-only or not writable ({exc.strerror}: {exc.filename})"
    return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)


_held: dict[Path, list[int]] = {}  # resolved lock path -> [file descriptor, users in this process]
_guard = threading.Lock()


class HomeLock:
    """The exclusive lock of one home folder for this process (reference-counted within the process)."""

    def __init__(self, home: str | Path) -> None:
        self.path = (Path(home) / LOCK_NAME).resolve()
        self._open = False

    def acquire(self) -> HomeLock:
        """Take the lock (HomeLocked when another process holds it); returns self."""
        with _guard:
            held = _held.get(self.path)
            if held is not None:
                held[1] += 1
            else:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise HomeLocked(f"cannot open the home folder {self.path.parent}: {os_reason(exc)}") from exc
                try:
                    _lock(fd)
                except BlockingIOError:
                    os.lseek(fd, 0, os.SEEK_SET)
                    owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise HomeLocked(f"{self.path.parent} is in use by another iLearn process (pid {owner}); stop it "
                                     f"first or talk to it (one process per home)") from None
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                except OSError as exc:
                    os.close(fd)
                    raise HomeLocked(f"cannot write {self.path}: {os_reason(exc)}") from exc
                _held[self.path] = [fd, 1]
            self._open = True
        return self

    def release(self) -> None:
        """Give the lock back (the file stays; it holds no data but the last holder's pid)."""
        with _guard:
            if not self._open:
                return
            self._open = False
            held = _held.get(self.path)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del _held[self.path]
                os.close(held[0])  # closing the descriptor drops the flock

    def __del__(self) -> None:
        self.release()


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (documented in docs/privacy.md)
        logger.warning("no fcntl on this platform: one process per home is not enforced")
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
