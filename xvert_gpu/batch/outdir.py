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
Nested OUTDIRs are one tree: a run into ``out/`` would delete the temporary files of a run
into ``out/sub/`` going on meanwhile (its clean-up walks ``out/sub/``, and the other run's
may meet its own outputs there), and both would write ``out/sub/<name>`` and each record as
its own a file the other may have replaced. So, once it holds its own lock, a run is refused
while the lock of an OUTDIR above its own or below it is held (:func:`nested_run`); of two
such runs starting together at least one is refused, since each takes its own lock before it
looks. One after the other they are fine: outputs the manifest does not know are never
replaced.

:func:`remove_stale_output` deletes an output that no longer belongs to its input: an input
enhanced, then changed (truncated, corrupted, replaced), whose new attempt fails, would
otherwise keep an output made from its old content that looks like a valid result of the
input as it now is. Only a file the manifest shows this command wrote for that input, with
the bytes it recorded, is ever deleted.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented)
    fcntl = None

from ..io import file_sha256
from .errors import UsageError
from .paths import MANIFEST_NAME, output_path

__all__ = ["RunLock", "clean_stale", "nested_run", "remove_stale_output", "STALE_PATTERN",
           "LOCK_NAME"]

LOCK_NAME = ".xvert_gpu.lock"

#: Temporary files of write_image (``.<name>.<8 random chars>.tmp``).
STALE_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class RunLock:
    """Exclusive lock on OUTDIR for one run (a context manager).

    Raises
    ------
    UsageError
        When another process holds it or the lock of an OUTDIR nested with this one
        (:func:`nested_run`), or the lock file cannot be created.
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
        if fcntl is None:  # not POSIX: no lock (documented)
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
        try:
            other = nested_run(self.path.parent)
        except BaseException:
            self.__exit__()
            raise
        if other is not None:
            self.__exit__()
            folder, pid, where = other
            raise UsageError(f"another xvert-gpu enhance (pid {pid}) is writing to {folder}, "
                             f"which {where} OUTDIR {self.path.parent}: the two runs would delete "
                             "each other's temporary files and replace each other's outputs; "
                             "wait for it, or choose an OUTDIR that neither contains nor lies "
                             "inside the other") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def _holder(lock: Path) -> str | None:
    """The pid written in ``lock`` when a process holds its flock now ("?" if it wrote none),
    else None. A shared lock taken and dropped at once is enough to ask."""
    try:
        if not stat.S_ISREG(os.lstat(lock).st_mode):
            return None
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def nested_run(outdir: str | os.PathLike) -> tuple[Path, str, str] | None:
    """A run going on now into an OUTDIR above ``outdir`` or below it, else None.

    Returns
    -------
    (folder, pid, where) or None
        The other run's OUTDIR, its pid, and "is inside" or "contains" (``folder``'s relation
        to ``outdir``).

    Notes
    -----
    Looks for held :data:`LOCK_NAME` files in every folder above ``outdir`` (resolved) and in
    every folder below it (symlinked folders are not followed: outputs are never written
    through them). Not POSIX (no ``flock``): None, as :class:`RunLock` takes no lock there.
    """
    if fcntl is None:
        return None
    top = Path(os.path.realpath(outdir))
    for folder in top.parents:
        pid = _holder(folder / LOCK_NAME)
        if pid is not None:
            return folder, pid, "contains"
    for root, dirs, files in os.walk(top, followlinks=False):
        if LOCK_NAME in files and Path(root) != top:
            pid = _holder(Path(root) / LOCK_NAME)
            if pid is not None:
                return Path(root), pid, "is inside"
    return None


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


def remove_stale_output(outdir: str | os.PathLike, rel: str, recorded: Mapping[str, Any],
                        read: Mapping[str, Any]) -> str | None:
    """After a failed attempt, delete its output when that output is stale; say what was done.

    Parameters
    ----------
    outdir : path
        OUTDIR (resolved).
    rel : str
        The output path relative to OUTDIR.
    recorded : mapping
        The manifest row of the input and ``rel`` as it was *before* the attempt started:
        ``out_sha256`` (the output this command wrote) and ``sha256`` (the input it was made from).
    read : mapping
        What the failed attempt found: ``sha256`` of the input as it is now (absent when the
        input could not even be hashed).

    Returns
    -------
    str or None
        A clause for the failure's reason when the output was deleted (or should have been
        and could not be); None when it was left alone.

    Notes
    -----
    The output is deleted only when (1) it is this command's: a regular file whose bytes are
    the ``out_sha256`` the manifest recorded for this very input (a file the user replaced or
    edited since is theirs, and is never touched), and (2) it was made from other input bytes
    than the attempt read. When the input could not be hashed (gone, unreadable), or was read
    with the same bytes (the attempt failed for another reason: memory, a full disk, a new
    model), the output is still the result of the input as it is and stays.
    """
    made_from, now, wrote = recorded.get("sha256"), read.get("sha256"), recorded.get("out_sha256")
    if not (made_from and now and wrote) or now == made_from:
        return None
    out = output_path(outdir, rel)
    try:
        if not stat.S_ISREG(os.lstat(out).st_mode) or file_sha256(out) != wrote:
            return None  # gone, a symlink, or not the bytes this command wrote: not ours
    except (OSError, ValueError):
        return None
    try:
        out.unlink()
    except OSError as exc:
        return (f"its earlier output {out}, made from the input's previous content, could not "
                f"be removed ({exc.strerror or exc}): delete it, it is not a result of this input")
    return f"its earlier output {out}, made from the input's previous content, was removed"
