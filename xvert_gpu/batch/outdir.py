"""Housekeeping of OUTDIR: one run at a time, and no stale temporary files.

Outputs are written by :func:`xvert_gpu.io.write_image`: encoded into a hidden temporary file
``.<name>.<random>.tmp`` *in the output's own folder* (so the final rename is atomic on the
same file system), fsynced, then renamed over the final name. A run killed at any moment
leaves at most such temporary files, never a partial file under a final name;
:func:`clean_stale` removes them when the next run starts. Only names of exactly that shape
(8 random characters, as ``tempfile.mkstemp`` makes them) are touched, only under OUTDIR, and
only once OUTDIR holds the manifest: OUTDIR may be a folder that already held the user's own
files (a partial download ``x.part``, a hidden ``.notes.tmp``), which are none of ours.

:class:`RunLock` holds an exclusive ``flock`` on ``OUTDIR/.xvert_gpu.lock`` for the length of
a run, so a second run into the same OUTDIR is refused instead of racing on the manifest and
on the temporary files. The kernel drops the lock when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UsageError
from .paths import MANIFEST_NAME

__all__ = ["RunLock", "clean_stale", "STALE_PATTERN", "LOCK_NAME"]

LOCK_NAME = ".xvert_gpu.lock"

#: Temporary files of write_image (``.<name>.<8 random chars>.tmp``).
STALE_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class RunLock:
    """Exclusive lock on OUTDIR for one run (a context manager).

    Raises
    ------
    UsageError
        When another process holds it, or the lock file cannot be created.
    """

    def __init__(self, outdir: str | os.PathLike):
        self.path = Path(outdir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # read-only OUTDIR, a folder by that name...
            raise UsageError(f"cannot create the lock file {self.path}: "
                             f"{exc.strerror or exc}") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            return self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise UsageError(f"another xvert-gpu enhance (pid {other}) is writing to "
                             f"{self.path.parent}; wait for it or choose another OUTDIR") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def clean_stale(outdir: str | os.PathLike) -> list[Path]:
    """Delete temporary files left by killed runs anywhere under OUTDIR; return their paths.

    Call it only while holding :class:`RunLock` (another run's files are not stale). Without
    the manifest (:data:`~xvert_gpu.batch.paths.MANIFEST_NAME`) no run has written there yet
    (it is created before the first output), so nothing is touched.
    """
    removed = []
    if not os.path.exists(os.path.join(outdir, MANIFEST_NAME)):
        return removed
    for root, dirs, files in os.walk(outdir, followlinks=False):
        for name in files:
            if STALE_PATTERN.match(name):
                p = Path(root) / name
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed
