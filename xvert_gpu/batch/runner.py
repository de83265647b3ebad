"""One batch run from start to end: :func:`enhance_archive`.

Order of events: check the settings and the layout and plan the files (nothing written yet,
any problem is a :class:`UsageError`); load the model (or start the Dask cluster and ask a
worker for the model identity); create OUTDIR, take its lock, delete stale temporary files,
open the manifest; record the rejected files, decide for every planned file (skip, run or
refuse, :mod:`xvert_gpu.batch.resume`); run the rest locally or on Dask (a failed file whose
output was made from the input's previous content loses that output,
:func:`~xvert_gpu.batch.outdir.remove_stale_output`); close the run's manifest row and return
the :class:`Summary`.

SIGTERM (``kill``, systemd, Slurm, Kubernetes) stops a run the way Ctrl-C does: for the length
of :func:`enhance_archive` its default action is replaced by a handler that raises
:class:`~xvert_gpu.batch.errors.Terminated` (a KeyboardInterrupt) in the main thread, so the
writes already running are recorded as done and the run as interrupted, and a rerun redoes
none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from .. import __version__
from .errors import UsageError
from .manifest import Manifest
from .options import BatchOptions, default_workers
from .outdir import RunLock, clean_stale, remove_stale_output
from .paths import MANIFEST_NAME, Job, plan
from .report import Progress, Summary, printable
from .resume import REFUSE, SKIP, decide, job_params
from .signals import interrupt_signal, sigterm_interrupts
from .threads import limit_threads
from .work import Result, derivation

__all__ = ["enhance_archive"]


class _Local:
    """The local executor: an Enhancer in this process."""

    def __init__(self, opts: BatchOptions):
        from ..enhancer import Enhancer

        self._restore = limit_threads(opts.threads)
        try:
            self.enhancer = Enhancer.from_pretrained(opts.model, device=opts.device)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            self._restore()
            raise UsageError(f"cannot load model {opts.model!r} on device {opts.device!r}: "
                             f"{exc}") from None
        bs = opts.batch_size or (8 if self.enhancer.device == "cuda" else 1)
        self.enhancer.batch_size = bs  # a plain setting: no need to build a second Enhancer
        self.identity = self.enhancer.identity
        self.batch_size = bs
        self.workers = opts.workers or default_workers()

    def run(self, jobs: list[Job], outdir: str, on_start, on_result) -> None:
        from .pipeline import run_local

        run_local(self.enhancer, jobs, outdir, batch_size=self.batch_size, workers=self.workers,
                  parameters=derivation(self.enhancer), on_start=on_start, on_result=on_result)

    def close(self) -> None:
        self._restore()  # leave an embedding process as it was


def _executor(opts: BatchOptions):
    if opts.dask:
        from .distributed import DaskRunner

        return DaskRunner(opts.dask, opts.model, opts.device, opts.threads,
                          opts.workers or default_workers(), opts.retries)
    return _Local(opts)


def _open_manifest(path: Path) -> Manifest:
    """OUTDIR's manifest; a :class:`UsageError` when it cannot be used (corrupt, a folder,
    written by a newer xvert_gpu): the run must not go on without its record."""
    try:
        return Manifest(path)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise UsageError(f"cannot use the manifest {path}: {type(exc).__name__}: {exc} (run the "
                         "xvert_gpu that wrote it, move it away to start a new record, or choose "
                         "another OUTDIR)") from None


def _drop_stale_output(result: Result, outdir: str, rel: str, recorded: dict) -> None:
    """Remove a failed file's output if it was made from the input's previous content, and
    say so in ``result`` (its reason, and no output size or hash for the manifest)."""
    note = remove_stale_output(outdir, rel, recorded, result.fields)
    if note is None:
        return
    result.error = f"{result.error or 'unknown error'}; {note}"
    if note.endswith("was removed"):
        result.fields.update(out_size=None, out_sha256=None)


def enhance_archive(opts: BatchOptions, stream: TextIO | None = None) -> Summary:
    """Enhance every image of ``opts.inputs`` into ``opts.outdir``.

    Parameters
    ----------
    opts : BatchOptions
    stream : file, optional
        Progress bar and failure lines (default stderr).

    Returns
    -------
    Summary
        ``summary.exit_code`` is 0 when no file failed, else 1.

    Raises
    ------
    UsageError
        When the run cannot start (nothing has been processed then).
    KeyboardInterrupt
        On Ctrl-C, or :class:`~xvert_gpu.batch.errors.Terminated` on SIGTERM, before any file
        was started (once files run, the summary says ``interrupted`` instead).
    """
    with sigterm_interrupts():
        return _run(opts, stream)


def _run(opts: BatchOptions, stream: TextIO | None) -> Summary:
    """The body of :func:`enhance_archive`."""
    t0 = time.perf_counter()
    opts.validate()
    the_plan = plan(list(opts.inputs), opts.outdir, opts.format)
    outdir = the_plan.outdir
    summary = Summary(ignored=list(the_plan.ignored))
    params = json.dumps({"format": opts.format, "xvert_gpu": __version__}, sort_keys=True)
    executor = _executor(opts)
    with contextlib.ExitStack() as stack:
        stack.callback(executor.close)
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create OUTDIR {opts.outdir}: {exc}") from None
        stack.enter_context(RunLock(outdir))
        summary.stale_removed = len(clean_stale(outdir))
        manifest = stack.enter_context(_open_manifest(outdir / MANIFEST_NAME))
        summary.manifest = str(outdir / MANIFEST_NAME)
        model = executor.identity
        settings = {"model": opts.model, "device": opts.device, "dask": opts.dask,
                    "batch_size": getattr(executor, "batch_size", 1),
                    "workers": opts.workers, "threads": opts.threads, "resume": opts.resume,
                    "overwrite": opts.overwrite}
        run = manifest.begin_run(opts.argv, model, json.loads(params), settings)

        def fail(source: str, key: str, reason: str) -> None:
            manifest.reject(key, run, reason, params, model)
            summary.failed.append((source, reason))

        for source, reason in the_plan.rejected:
            fail(source, os.path.abspath(source), reason)  # the key jobs use: ".." resolved
        todo = []
        for job in the_plan.jobs:
            action, reason = decide(job, manifest, outdir, job_params(job), model,
                                    resume=opts.resume, overwrite=opts.overwrite)
            if action == SKIP:
                summary.skipped += 1
            elif action == REFUSE:
                fail(job.source, job.key, reason)
            else:
                todo.append(job)
        for source, reason in summary.failed:
            print(printable(f"{source}: {reason}"), file=stream or sys.stderr, flush=True)
        progress = Progress(len(todo), quiet=opts.quiet, stream=stream)

        # A Result names its input only; the plan has one job per input, so its output is this.
        output_of = {job.key: job.rel for job in todo}
        # The row of each started file as it was before its attempt (start() marks it running,
        # and a failed finish() records the new input's hash): what its output was made from.
        before: dict[str, dict] = {}

        def on_start(job: Job) -> None:
            row = manifest.get(job.key, job.rel)
            if row is not None and row["out_sha256"]:
                before[job.key] = dict(row)
            manifest.start(job.key, job.rel, run, job_params(job), model)

        def on_result(result: Result) -> None:
            recorded = before.pop(result.key, None)
            if result.status == "failed" and recorded is not None:
                _drop_stale_output(result, str(outdir), output_of[result.key], recorded)
            manifest.finish(result.key, output_of[result.key], result.status,
                            {**result.fields, "error": result.error}, model=result.model)
            if result.status == "done":
                summary.done += 1
            else:
                summary.failed.append((result.source, result.error or "unknown error"))
            progress.update(result.status == "done", result.source, result.error or "")

        status = "interrupted"
        try:
            executor.run(todo, str(outdir), on_start, on_result)
            status = "finished"
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
            summary.interrupted = True
            summary.interrupt_signal = interrupt_signal(exc)
        except sqlite3.Error as exc:  # full disk...: files can no longer be recorded, so stop
            status = "stopped"
            summary.stopped = f"cannot write the manifest {manifest.path}: {exc}"
        finally:
            progress.close()
            summary.seconds = time.perf_counter() - t0
            try:
                manifest.end_run(run, status, summary.counts())
            except sqlite3.Error:
                if status != "stopped":
                    raise
    return summary
