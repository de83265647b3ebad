"""The settings of one batch run (what ``xvert-gpu enhance`` parses)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import UsageError
from .formats import CHOICES

__all__ = ["BatchOptions", "default_workers"]


def default_workers() -> int:
    """I/O threads (local) or worker processes (``--dask local``) when not given: the CPU
    count, at least 2 and at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


@dataclass
class BatchOptions:
    """Settings of :func:`xvert_gpu.batch.enhance_archive`.

    Parameters
    ----------
    inputs : list of str
        Files and folders.
    outdir : str
        OUTDIR (created if missing).
    model : str
        ``"default"`` or an artefact path (``.pt``/``.pt2``).
    device : {"auto", "cpu", "cuda"}
    format : {"same", "png", "tiff", "dcm"}
        See :mod:`xvert_gpu.batch.formats`.
    batch_size : int, optional
        Images per network call in a local run (stacks of equal shape and bit depth).
        Default 1 on the CPU (no gain from batching there, and outputs are bit-for-bit
        reproducible only for equal batch composition), 8 on CUDA. Dask tasks are always
        one image.
    workers : int, optional
        Local run: decoding/encoding threads. ``dask="local"``: worker processes.
        Default :func:`default_workers`.
    threads : int, optional
        CPU threads of the network (torch) and the WLS solver (Numba) in this process or in
        each Dask worker (:mod:`xvert_gpu.batch.threads`); default: their own defaults (all
        cores; a Dask worker's torch uses 1 thread, as Dask starts workers with
        ``OMP_NUM_THREADS=1``). CPU network results depend on torch's count in the last bit.
    resume, overwrite : bool
        See :mod:`xvert_gpu.batch.resume`.
    dask : str, optional
        ``"local"`` or a scheduler address (``tcp://host:8786``); None runs locally.
    retries : int
        Dask: times a task is retried when its worker dies.
    quiet : bool
        No progress bar (failures and the summary are still printed).
    argv : list of str
        The command line, for the manifest's ``runs`` table.
    """

    inputs: list[str]
    outdir: str
    model: str = "default"
    device: str = "auto"
    format: str = "same"
    batch_size: int | None = None
    workers: int | None = None
    threads: int | None = None
    resume: bool = True
    overwrite: bool = False
    dask: str | None = None
    retries: int = 2
    quiet: bool = False
    argv: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise :class:`UsageError` for impossible settings."""
        if not self.inputs:
            raise UsageError("no INPUT given")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UsageError(f"--device must be auto, cpu or cuda; got {self.device!r}")
        if self.format not in CHOICES:
            raise UsageError(f"--format must be one of {', '.join(CHOICES)}; got {self.format!r}")
        for name in ("batch_size", "workers", "threads"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {v}")
        if int(self.retries) < 0:
            raise UsageError(f"--retries must be >= 0; got {self.retries}")
