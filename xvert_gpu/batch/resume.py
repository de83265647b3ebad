"""Which planned files a run skips, redoes or refuses (``--resume``, ``--no-resume``, ``--overwrite``).

``--resume`` (default)
    A file is *skipped* when the manifest row of its input and output path is ``done``, for
    the same model identity and parameters (the format written, not the ``--format`` choice
    that led to it, and the toolkit version), its output file still exists with the recorded
    size, and the input is unchanged: the same size and modification time as recorded (then
    the recorded SHA-256 is trusted, as make and rsync do), or else the same SHA-256
    recomputed. The manifest keeps a row per (input, output) pair, so an input named as a file
    in one run and inside its folder in the next is skipped for each output it has. Everything
    else is (re)done: new files, changed inputs, another model or ``--format``, deleted
    outputs, and ``failed`` and ``running`` rows. Failed files are retried on every run because
    failures can be passing (a file still being copied, a full disk, memory); a file that
    fails for good costs one read per run, and its row counts the attempts.
``--no-resume``
    Every file is redone; the manifest is still written.
``--overwrite``
    Every file is redone (implies ``--no-resume``) and existing outputs are replaced even when
    the manifest does not know them.

Without ``--overwrite`` an output file that already exists is replaced only when the manifest
records it as the output of the same input (a failed or killed attempt, an older model...). A file
the manifest does not know (not written by this command) is left alone and its input reported as
failed. A file the manifest records as the output of *another* input path is either the same
file moved (an archive moved or renamed since: same SHA-256, done and current, so the row moves
to the new path and the file is skipped; an identical copy is skipped too, and the original
keeps its row) or a different image under the same output name (a second archive sent to the
same OUTDIR: refused, so that one input's output never silently replaces another's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..io import file_sha256
from .formats import CHOICES, output_format
from .manifest import Manifest
from .paths import Job, output_path

__all__ = ["decide", "job_params", "SKIP", "RUN", "REFUSE"]

SKIP, RUN, REFUSE = "skip", "run", "refuse"


def job_params(job: Job) -> str:
    """The parameters that shape ``job``'s output, as the manifest stores them (JSON).

    The format is the one written (``png``, ``tiff``, ``dicom``...), not the ``--format``
    choice that led to it: ``--format same`` and ``--format png`` give the same file for a PNG
    input, so a rerun with the other choice skips it.
    """
    return json.dumps({"format": job.out_format, "xvert_gpu": __version__}, sort_keys=True)


def _same_params(recorded: str | None, params: str, job: Job) -> bool:
    """``recorded`` (a row's params) describe the output ``params`` describe. Rows written
    before :func:`job_params` hold the ``--format`` choice; it is resolved for the job's input."""
    if recorded == params:
        return True
    try:
        old, new = json.loads(recorded or ""), json.loads(params)
    except (TypeError, ValueError):
        return False
    if not isinstance(old, dict) or not isinstance(new, dict):
        return False
    if old.get("format") in CHOICES:
        old["format"] = output_format(job.in_format, old["format"])
    return old == new


def _stale(job: Job, row, out: Path, params: str, model: str) -> str | None:
    """Why a ``done`` row does not cover ``job`` any more (None: it does)."""
    if row["output"] != job.rel:
        return "output path changed"
    if row["model"] != model:
        return "another model"
    if not _same_params(row["params"], params, job):
        return "other parameters"
    if not out.is_file() or (row["out_size"] is not None and out.stat().st_size != row["out_size"]):
        return "output missing or changed"
    if not _unchanged(job, row):
        return "input changed"
    return None


def _unchanged(job: Job, row) -> bool:
    """The input is the one the row recorded (size and mtime equal, else equal SHA-256)."""
    try:
        st = os.stat(job.source)
    except OSError:
        return False
    if job.key == row["input"] and st.st_size == row["size"] and st.st_mtime_ns == row["mtime_ns"]:
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
        The job's parameters as stored in the manifest (JSON, :func:`job_params`).
    model : str
        The model identity of the run.

    Notes
    -----
    When another input's row owns the output name (an archive moved or renamed since the run
    that wrote it, or a second archive sent to the same OUTDIR): with ``--resume``, if that row
    is done and still current for this input's bytes (same SHA-256), the file is skipped, and
    the row moves to this input's path if its own input is gone (moved; a copy still in place
    keeps its record); otherwise the file is refused unless ``--overwrite``, so that one input's
    output never silently replaces another's.
    """
    out = output_path(outdir, job.rel)
    if overwrite:
        return RUN, "--overwrite"
    row = manifest.get(job.key, job.rel)
    reason = "new" if row is None else row["status"]
    if resume and row is not None and row["status"] == "done":
        reason = _stale(job, row, out, params, model)
        if reason is None:
            return SKIP, "already done"
    owner = manifest.owner(job.rel)
    if owner is not None and owner["input"] != job.key:
        if resume and owner["status"] == "done" and _stale(job, owner, out, params, model) is None:
            if not os.path.lexists(owner["input"]):  # moved: the record follows the file
                st = os.stat(job.source)
                manifest.rekey(owner["input"], job.key, job.rel, st.st_size, st.st_mtime_ns)
            return SKIP, f"already done (as {owner['input']})"
        if os.path.lexists(out):
            return REFUSE, (f"output {out} holds the enhanced {owner['input']} (manifest); "
                            "use another OUTDIR, or --overwrite to replace it")
    elif owner is None and os.path.lexists(out):
        return REFUSE, (f"output {out} exists and was not written by this command (not in the "
                        "manifest); use --overwrite to replace it")
    return RUN, reason
