"""What a run tells its user: a progress bar while it runs, a summary at the end.

* The progress bar (tqdm, on stderr) counts the files to process, with images/s and ETA, and
  the failures so far. ``--quiet`` turns it off.
* A failure is printed at once on stderr as ``path: reason`` (``--quiet`` too: failures are
  never silent).
* :meth:`Summary.format` gives the closing summary: done, skipped as already done, failed
  (each with its path and reason), ignored files met while walking (the first
  :data:`LIST_LIMIT` listed, the rest counted), stale temporary files removed, the manifest.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["Summary", "Progress", "LIST_LIMIT", "printable"]

#: Ignored files listed by name in the summary (failures are always all listed).
LIST_LIMIT = 20


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of file names (surrogate escapes) shown as ``\\xNN``.

    A file name that is not UTF-8 (an archive written under Latin-1) reaches Python with
    surrogate escapes, which a UTF-8 stream with strict errors (stdout under a UTF-8 locale)
    refuses: printing the summary would raise at the very end of the run.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


@dataclass
class Summary:
    """Counts and reasons of one run."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    stale_removed: int = 0
    manifest: str = ""
    seconds: float = 0.0
    interrupted: bool = False
    #: the signal that interrupted the run: 2 (SIGINT, Ctrl-C) or 15 (SIGTERM)
    interrupt_signal: int = 2
    #: why the run stopped before the end (the manifest could not be written), or None
    stopped: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when some file failed (or the run was interrupted or stopped)."""
        return 1 if self.failed or self.interrupted or self.stopped else 0

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "skipped": self.skipped, "failed": len(self.failed),
                "ignored": len(self.ignored)}

    def format(self, verbose: bool = True) -> str:
        """The summary text; ``verbose=False`` gives the first line and the failures only."""
        rate = f", {self.done / self.seconds:.2f} images/s" if self.done and self.seconds else ""
        head = (f"enhance: {self.done} done, {self.skipped} skipped (already done), "
                f"{len(self.failed)} failed, {len(self.ignored)} ignored (not images) "
                f"in {self.seconds:.1f} s{rate}")
        if self.interrupted:
            by = " (SIGTERM)" if self.interrupt_signal == signal.SIGTERM else ""
            head += f" - INTERRUPTED{by}; run the same command again to finish"
        if self.stopped:
            head += (f" - STOPPED: {self.stopped}; fix that (free disk space?) and run the same "
                     "command again to finish")
        lines = [head]
        if self.failed:
            lines.append("failed:")
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        if verbose and self.ignored:
            lines.append("ignored:")
            lines += [f"  {path}: {reason}" for path, reason in self.ignored[:LIST_LIMIT]]
            if len(self.ignored) > LIST_LIMIT:
                lines.append(f"  ... and {len(self.ignored) - LIST_LIMIT} more")
        if verbose and self.stale_removed:
            lines.append(f"removed {self.stale_removed} stale temporary file(s) of an earlier "
                         "interrupted run")
        if verbose and self.manifest:
            lines.append(f"manifest: {self.manifest}")
        return printable("\n".join(lines))


class Progress:
    """Progress bar and immediate failure lines.

    Parameters
    ----------
    total : int
        Files to process.
    quiet : bool
        No bar.
    stream : file, optional
        Where the bar and failure lines go (default stderr).
    """

    def __init__(self, total: int, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.failed = 0
        self.bar = None
        if not quiet and total:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="img", desc="enhance", file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, ok: bool, path: str = "", reason: str = "") -> None:
        """One file finished (``ok``), or failed with ``reason``."""
        if not ok:
            self.failed += 1
            line = printable(f"{path}: {reason}")
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
                self.bar.set_postfix(failed=self.failed, refresh=False)
            else:
                print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
