"""Errors of the batch enhancer that are not about one file."""

from __future__ import annotations

import signal

__all__ = ["UsageError", "Terminated"]


class UsageError(Exception):
    """The command cannot run as given (bad OUTDIR, missing input, unloadable model, a corrupt
    or newer manifest, a lock file that cannot be created...).

    The ``xvert-gpu enhance`` command prints the message and exits with status 2; nothing has
    been written when it is raised.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a run (``kill``, systemd, Slurm, Kubernetes).

    Raised in the main thread by the run's SIGTERM handler, so that the run stops the way it
    does on Ctrl-C (the writes already running are recorded, the run is marked interrupted);
    ``signum`` is the signal's number, for the exit status (128 + 15).
    """

    signum = int(signal.SIGTERM)
