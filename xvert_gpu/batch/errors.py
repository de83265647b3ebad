"""Errors of the batch enhancer that are not about one file."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """The command cannot run as given (bad OUTDIR, missing input, unloadable model, a corrupt
    or newer manifest, a lock file that cannot be created...).

    The ``xvert-gpu enhance`` command prints the message and exits with status 2; nothing has
    been written when it is raised.
    """
