"""One training run per work dir, and a ``last_checkpoint`` pointer that moves with the work dir.

- :func:`work_dir_lock`: an exclusive ``fcntl.flock`` on ``<work_dir>/.polymodal.lock`` for the length of a run.
  A second run on the same work dir is refused (:class:`WorkDirLockedError`, naming the work dir and the process
  that holds it) instead of interleaving its checkpoints with the first's. The kernel drops the lock when the
  process ends, however it ends, so the lock file a killed run leaves behind blocks nothing. (Without ``fcntl``,
  on Windows, runs are not locked.)
- :func:`latest_checkpoint`: the checkpoint ``<work_dir>/last_checkpoint`` names, resolved against the work dir
  (:class:`~polymodal.train.hooks.AtomicCheckpointHook` writes the name relative to it, so a copied or moved work
  dir resumes from its own checkpoints, not the original's).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LAST_CHECKPOINT", "LOCK_NAME", "WorkDirLockedError", "latest_checkpoint", "work_dir_lock"]

LOCK_NAME = ".polymodal.lock"
LAST_CHECKPOINT = "last_checkpoint"


class WorkDirLockedError(RuntimeError):
    """Another run holds the work dir's lock."""


def _holder_line() -> str:
    started = datetime.datetime.now().isoformat(timespec="seconds")
    command = " ".join(sys.argv) or "python"
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {command}\n"


@contextlib.contextmanager
def work_dir_lock(work_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``work_dir`` (created if missing) for the block; yield the lock file's path.

    Raises :class:`WorkDirLockedError` at once if another process holds it.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            raise WorkDirLockedError(
                f"work dir {work_dir} is in use by another training run ({holder or 'process unknown'}); expected "
                "one run at a time per work dir: wait for that run to end, or give this one another --work-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_line().encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def latest_checkpoint(work_dir: str | Path) -> str | None:
    """The checkpoint ``<work_dir>/last_checkpoint`` points to, or ``None`` without a pointer.

    A relative name is resolved against the work dir. An absolute path (written by mmengine's own hook or an older
    polymodal) is kept, except that when it leads out of the work dir and the work dir holds a checkpoint of the
    same name (a copied work dir), that one is used. Remote paths (``s3://…``) are returned as they are.
    """
    work_dir = Path(work_dir)
    pointer = work_dir / LAST_CHECKPOINT
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name:
        return None
    if "://" in name:
        return name
    path = Path(name)
    if not path.is_absolute():
        return str(work_dir / path)
    local = work_dir / path.name
    if path.parent.resolve() != work_dir.resolve() and local.exists():
        return str(local)
    return name
