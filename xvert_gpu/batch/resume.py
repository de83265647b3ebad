"""Which planned files a run skips, redoes or refuses (``--resume``, ``--no-resume``, ``--overwrite``).

``--resume`` (default)
    A file is *skipped* when its manifest row is ``done``, for the same output path, model
    identity and parameters, its output file still exists with the recorded size, and the input
    is unchanged: the same size and modification time as recorded (then the recorded SHA-256
    is trusted, as make and rsync do), or else the same SHA-256 recomputed. Everything else is
    (re)done: new files, changed inputs, another model or ``--format``, deleted outputs, and
    ``failed`` and ``running`` rows. Failed files are retried on every run because failures
    can be passing (a file still being copied, a full disk, memory); a file that fails for good
    costs one read per run, and its row counts the attempts.
``--no-resume``
    Every file is redone; the manifest is still written.
``--overwrite``
    Every file is redone (implies ``--no-resume``) and existing outputs are replaced even when
    the manifest does not know them.

Without ``--overwrite`` an output file that already exists is replaced only when the manifest
records it as an output of this command (any row, e.g. of a run killed between the rename and
the manifest update); an unknown file of that name (not written by this command) is left alone
and its input is reported as failed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .manifest import Manifest
from .paths import Job, output_path

__all__ = ["decide", "file_sha256", "SKIP", "RUN", "REFUSE"]

SKIP, RUN, REFUSE = "skip", "run", "refuse"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unchanged(job: Job, row) -> bool:
    try:
        st = os.stat(job.source)
    except OSError:
        return False
    if st.st_size == row["size"] and st.st_mtime_ns == row["mtime_ns"]:
        return True
    try:
        return st.st_size == row["size"] and file_sha256(job.source) == row["sha256"]
    except OSError:
        return False


def decide(job: Job, manifest: Manifest, outdir: Path, params: str, model: str, *,
           resume: bool = True, overwrite: bool = False) -> tuple[str, str]:
    """``(action, reason)`` for one planned job: :data:`SKIP`, :data:`RUN` or :data:`REFUSE`.

    Parameters
    ----------
    params : str
        The run's parameters as stored in the manifest (JSON).
    model : str
        The model identity of the run.
    """
    out = output_path(outdir, job.rel)
    if overwrite:
        return RUN, "--overwrite"
    row = manifest.get(job.key)
    if resume and row is not None and row["status"] == "done":
        if row["output"] != job.rel:
            reason = "output path changed"
        elif row["model"] != model:
            reason = "another model"
        elif row["params"] != params:
            reason = "other parameters"
        elif not out.is_file() or (row["out_size"] is not None
                                   and out.stat().st_size != row["out_size"]):
            reason = "output missing or changed"
        elif not _unchanged(job, row):
            reason = "input changed"
        else:
            return SKIP, "already done"
    else:
        reason = "new" if row is None else row["status"]
    if os.path.lexists(out) and manifest.owner(job.rel) is None:
        return REFUSE, (f"output {out} exists and was not written by this command (not in the "
                        "manifest); use --overwrite to replace it")
    return RUN, reason
