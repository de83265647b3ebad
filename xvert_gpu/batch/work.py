"""The steps of one file, shared by the local pipeline and the Dask workers.

:func:`load` (hash + decode), :func:`enhance_group` (the network on a stack of equal-shape
images), :func:`save` (encode + atomic write). None of them raises for a problem with one
file: :func:`load` and :func:`save` return a failed :class:`Result`, :func:`enhance_group`
returns the exception in the place of that image. A :class:`Result` is a small picklable
record, what a Dask worker sends back.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import (ImageReadError, ImageWriteError, Radiograph, file_sha256, read_image,
                  stored_format, write_image)
from .paths import Job, safe_output

__all__ = ["Loaded", "Result", "load", "group_key", "enhance_group", "save", "derivation",
           "worker_name", "METHOD"]

#: Method name written into derived DICOMs' DerivationDescription.
METHOD = "XVertNet"


def worker_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Result:
    """How one file ended: ``status`` "done" or "failed", ``error`` the reason if failed.

    ``fields`` holds manifest columns (:data:`xvert_gpu.batch.manifest.RESULT_FIELDS`);
    ``model`` the identity of the Enhancer that ran it (None if none ran).
    """

    key: str
    source: str
    status: str
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


@dataclass
class Loaded:
    """A decoded input with what the manifest records about it."""

    job: Job
    radiograph: Radiograph
    fields: dict[str, Any]
    started: float


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ImageReadError, ImageWriteError)):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return f"{type(exc).__name__}: {exc}"


def _unwritable(job: Job, held: str | None) -> str | None:
    """Why an input that holds a ``held`` image cannot give ``job``'s output, else None.

    A derived DICOM needs a DICOM source (its patient and study attributes), and JSRT raw is
    only ever 2048x2048 12-bit film density: a file named ``.dcm`` or ``.IMG`` that holds
    another format, or any non-DICOM under ``--format dcm``, would fail at the write, after
    the network. ``held`` None (the type cannot be told): the read says what is wrong.
    """
    if held is None or held == job.out_format or job.out_format not in ("dicom", "jsrt"):
        return None
    if job.out_format == "jsrt":  # only --format same gives JSRT: the input is named .IMG
        return (f"named as a JSRT raw file (.IMG) but holds a {held.upper()} image, so it "
                "cannot be written back as JSRT raw (2048x2048, 12 bits, no header); rename it "
                "to its format, or use --format png or tiff")
    if job.in_format == "dicom":  # --format same on a file named .dcm that is no DICOM
        return (f"named as a DICOM file but holds a {held.upper()} image, so no derived DICOM "
                "can be written for it (it has no patient and study attributes to carry over); "
                "rename it to its format, or use --format png or tiff")
    return (f"--format dcm needs a DICOM input to derive from (this is {held}); a DICOM "
            "without the source's patient and study attributes would be an orphan; use "
            "--format same, png or tiff for it")


def load(job: Job) -> Loaded | Result:
    """Hash and decode ``job``'s input; a failed :class:`Result` if that is impossible.

    An input whose format cannot give the job's output (:func:`_unwritable`) fails from its
    first bytes, before it is decoded (and so long before the network), and again from the
    decoded image should the file have been replaced in between.
    """
    t0 = time.perf_counter()
    fields: dict[str, Any] = {"in_format": job.in_format, "out_format": job.out_format,
                              "worker": worker_name()}
    try:
        st = os.stat(job.source)
        fields.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        fields["sha256"] = file_sha256(job.source)
        held = stored_format(job.source)
        why = _unwritable(job, held)
        if why:
            fields["in_format"] = held
        rad = None if why else read_image(job.source)
    except BaseException as exc:  # noqa: BLE001 - one bad file must not stop the run
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        fields["seconds"] = time.perf_counter() - t0
        return Result(job.key, job.source, "failed", _reason(exc), fields)
    if rad is not None:
        fields.update(in_format=rad.format, bits=rad.bits, height=int(rad.shape[0]),
                      width=int(rad.shape[1]))
        why = _unwritable(job, rad.format)
    if why:
        fields["seconds"] = time.perf_counter() - t0
        return Result(job.key, job.source, "failed", why, fields)
    return Loaded(job, rad, fields, t0)


def group_key(item: Loaded) -> tuple:
    """Images with equal keys can be enhanced as one stack: (shape, dtype, bits)."""
    px = item.radiograph.pixels
    return (px.shape, px.dtype.str, item.radiograph.bits)


def enhance_group(enhancer: Any, items: list[Loaded]) -> list[np.ndarray | BaseException]:
    """Enhance images of one :func:`group_key` as one stack.

    Returns, per image, the enhanced pixels (the input's dtype and bit depth) or the exception
    that stopped it. When the stack fails, each image is retried alone, so one bad image does
    not fail its batch companions.
    """
    bits = items[0].radiograph.bits  # the group's; only scales integer pixels
    try:
        stack = np.stack([it.radiograph.pixels for it in items])
        out = enhancer.enhance(stack, bits=bits)
        return [out[i] for i in range(len(items))]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001
        if len(items) == 1:
            return [exc]
    results: list[np.ndarray | BaseException] = []
    for it in items:
        results.extend(enhance_group(enhancer, [it]))
    return results


def derivation(enhancer: Any) -> dict[str, Any]:
    """Parameters named in a derived DICOM's DerivationDescription."""
    p = enhancer.params
    return {"model": enhancer.identity, "T": p.steps, "lambda": p.lam, "alpha": p.alpha,
            "eps": p.eps, "delta": p.delta, "stretch": f"{p.low}-{p.high} percentiles"}


def save(item: Loaded, pixels: np.ndarray | BaseException, outdir: str | os.PathLike,
         parameters: dict[str, Any] | None = None) -> Result:
    """Write the enhanced ``pixels`` of ``item`` to its output (atomically); a :class:`Result`.

    ``pixels`` may be the exception :func:`enhance_group` returned: then the result is failed.
    """
    job, fields = item.job, dict(item.fields)  # "worker" was set by load, in this process
    if isinstance(pixels, BaseException):
        fields["seconds"] = time.perf_counter() - item.started
        return Result(job.key, job.source, "failed", f"enhancement failed: {_reason(pixels)}",
                      fields)
    try:
        target = safe_output(outdir, job.rel)
        write_image(target, pixels, like=item.radiograph, format=job.out_format,
                    method=METHOD, parameters=parameters)
        data = Path(target).read_bytes()
        fields.update(out_size=len(data), out_sha256=hashlib.sha256(data).hexdigest())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001
        fields["seconds"] = time.perf_counter() - item.started
        return Result(job.key, job.source, "failed", f"cannot write output: {_reason(exc)}",
                      fields)
    fields["seconds"] = time.perf_counter() - item.started
    return Result(job.key, job.source, "done", None, fields)
