"""Which files a run enhances, and where each output goes.

Rules
-----
* An INPUT file is enhanced to ``OUTDIR/<its name>``; the files under an INPUT folder are
  enhanced to ``OUTDIR/<their path relative to that folder>`` (the tree is mirrored). The output
  name and format follow :mod:`xvert_gpu.batch.formats`.
* While walking a folder, a file is an image when its extension is one of
  :data:`xvert_gpu.io.EXTENSIONS` or, without such an extension, when it starts like a DICOM file
  (``DICM`` at byte 128, as PACS exports named by UID do). Everything else met while walking is
  *ignored*: not an error, but counted and listed in the summary, with the reason: not an image,
  hidden (name starting with ``.``, e.g. macOS ``._x.png`` resource forks), ``DICOMDIR`` (an
  index, no image), a symlinked folder (not followed, so a walk cannot loop), or a named pipe,
  socket or device (never opened: reading a FIFO would block the run). Symlinked files are
  followed.
* A file named explicitly that is not an image by these rules is *rejected*: reported as failed
  ("unknown extension"), since the user asked for it.
* Two inputs that would give the same output name: the first (in command-line order, folders
  walked in sorted order) wins, the other is rejected with the name of the first.
* Safety (checked before anything is written; a violation is a :class:`UsageError`):
  no input may lie inside OUTDIR or be OUTDIR (outputs could land on inputs); OUTDIR may lie
  inside an input folder only if it is new, empty or an earlier OUTDIR (it holds the manifest,
  or the marker ``xvert-gpu preprocess`` leaves), and it is then left out of the walk. Any other
  earlier OUTDIR met while walking is ignored too: its images are outputs, not radiographs to
  enhance again (its marker is looked for again once the walk lists it, so a folder that
  another run makes its OUTDIR during the walk is left out as well). An output path is always inside OUTDIR:
  relative names with ``..`` are refused, and :func:`safe_output` refuses to write through a
  symlink inside OUTDIR (a symlinked sub-folder could point anywhere, into the inputs too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ..io import EXTENSIONS
from ..io.read import _special_kind
from .errors import UsageError
from .formats import input_format, output_format, output_name

__all__ = ["Job", "Plan", "plan", "output_path", "safe_output", "is_within", "is_outdir",
           "MANIFEST_NAME", "PREPROCESS_MARKER", "OUTDIR_MARKERS"]

#: File name of the manifest inside OUTDIR (see :mod:`xvert_gpu.batch.manifest`).
MANIFEST_NAME = "xvert_manifest.sqlite"

#: File that ``xvert-gpu preprocess`` puts in its OUTDIR (it keeps no manifest).
PREPROCESS_MARKER = ".xvert_gpu.preprocess"

#: Files that mark a folder as an OUTDIR of this toolkit: it holds outputs, not inputs.
OUTDIR_MARKERS = (MANIFEST_NAME, PREPROCESS_MARKER)


_EARLIER_OUTDIR = "an earlier OUTDIR (holds its manifest or marker): output images, not walked"


def is_outdir(folder: str | os.PathLike) -> bool:
    """``folder`` is an OUTDIR of ``xvert-gpu enhance`` or ``preprocess`` (holds a marker)."""
    return any(os.path.lexists(os.path.join(folder, m)) for m in OUTDIR_MARKERS)


@dataclass(frozen=True)
class Job:
    """One input file and its output.

    Attributes
    ----------
    source : str
        The input path as the user would name it (INPUT argument joined with the relative path).
    key : str
        Absolute input path: the manifest key.
    rel : str
        Output path relative to OUTDIR, POSIX separators.
    in_format, out_format : str
        :data:`xvert_gpu.io.FORMATS` names.
    """

    source: str
    key: str
    rel: str
    in_format: str
    out_format: str


@dataclass
class Plan:
    """What a run will do: the jobs, and the files it will not process and why."""

    outdir: Path
    jobs: list[Job] = field(default_factory=list)
    #: (path, reason) of files named explicitly that cannot be processed, and output collisions
    rejected: list[tuple[str, str]] = field(default_factory=list)
    #: (path, reason) of files and folders met while walking and left alone
    ignored: list[tuple[str, str]] = field(default_factory=list)


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True if ``path`` is ``folder`` or lies below it (both taken as given: resolve them first)."""
    p, f = os.path.normcase(os.fspath(path)), os.path.normcase(os.fspath(folder))
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def output_path(outdir: str | os.PathLike, rel: str) -> Path:
    """``OUTDIR/rel``, refusing any ``rel`` that is absolute, empty or contains ``..``."""
    r = PurePosixPath(rel.replace(os.sep, "/"))
    if not rel or r.is_absolute() or any(part in ("..", "") for part in r.parts) \
            or Path(rel).is_absolute() or Path(rel).drive:
        raise ValueError(f"output path {rel!r} escapes OUTDIR")
    return Path(outdir).joinpath(*r.parts)


def safe_output(outdir: str | os.PathLike, rel: str) -> Path:
    """The output path for ``rel``, with its folders created, guaranteed to be inside OUTDIR.

    Raises ``ValueError`` when a component of the path inside OUTDIR is a symlink (writing
    through it could land anywhere) or a file where a folder is needed, and when the output
    itself is a symlink.
    """
    target = output_path(outdir, rel)
    here = Path(outdir)
    here.mkdir(parents=True, exist_ok=True)
    for part in PurePosixPath(rel.replace(os.sep, "/")).parts[:-1]:
        here = here / part
        if os.path.islink(here):
            raise ValueError(f"{here}: a symlink inside OUTDIR; refusing to write through it")
        if here.exists() and not here.is_dir():
            raise ValueError(f"{here}: exists and is not a folder")
        here.mkdir(exist_ok=True)
    if os.path.islink(target):
        raise ValueError(f"{target}: the output path is a symlink; refusing to write through it")
    real_parent = os.path.realpath(target.parent)
    if not is_within(real_parent, os.path.realpath(outdir)):
        raise ValueError(f"{target}: resolves outside OUTDIR")
    return target


def _special(path: str) -> str | None:
    """What ``path`` is when it is not a regular file or folder (a FIFO, ...), else None."""
    try:
        return _special_kind(os.stat(path).st_mode)
    except OSError:  # missing, dangling symlink: reading it says why
        return None


def _sniff_dicom(path: str) -> bool:
    if _special(path) is not None:  # reading a FIFO would block
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _image_format(path: str) -> str | None:
    fmt = input_format(path)
    if fmt is None and Path(path).suffix.lower() not in EXTENSIONS and _sniff_dicom(path):
        return "dicom"
    return fmt


def _is_ours(outdir: Path) -> bool:
    """OUTDIR is new, empty, or was written by this command before."""
    if not outdir.exists():
        return True
    try:
        entries = list(outdir.iterdir())
    except OSError:
        return False
    return not entries or is_outdir(outdir)


def _check_layout(inputs: list[str], outdir: Path, out_real: str) -> set[str]:
    """Raise :class:`UsageError` for unsafe layouts; return the real paths to leave out of walks."""
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"OUTDIR {outdir} exists and is not a folder")
    excluded = set()
    for arg in inputs:
        if not os.path.exists(arg):
            raise UsageError(f"input {arg} does not exist")
        real = os.path.realpath(arg)
        if is_within(real, out_real):
            raise UsageError(f"input {arg} is inside OUTDIR {outdir} (or is it): outputs could "
                             "overwrite inputs; choose an OUTDIR outside the inputs")
        if os.path.isdir(real) and is_within(out_real, real):
            if not _is_ours(outdir):
                raise UsageError(f"OUTDIR {outdir} is inside input folder {arg} and already holds "
                                 "files that are not output of this command; choose a new or empty "
                                 "OUTDIR (it is then left out of the walk) or one outside the inputs")
            excluded.add(out_real)
    return excluded


def plan(inputs: list[str], outdir: str | os.PathLike, choice: str = "same", *,
         namer: Callable[[str, str, str], str] = output_name) -> Plan:
    """Walk ``inputs`` (files and folders) and map each image to its output under ``outdir``.

    Parameters
    ----------
    inputs : list of str
        INPUT arguments, in command-line order.
    outdir : path
        OUTDIR (need not exist).
    choice : {"same", "png", "tiff", "dcm"}
        ``--format``.
    namer : callable, optional
        ``namer(file name, input format, output format)`` gives an input's output file name
        (default :func:`~xvert_gpu.batch.formats.output_name`); another command names its
        outputs its own way (``xvert-gpu preprocess``: ``a.png`` gives ``a_xp.tif``), and output
        collisions are then found on those names, without regard to case.

    Returns
    -------
    Plan
        ``outdir`` is the resolved OUTDIR; jobs in a deterministic order.

    Raises
    ------
    UsageError
        A missing input or an unsafe layout (see the module docstring).
    """
    outdir = Path(outdir)
    out_real = os.path.realpath(outdir)
    excluded = _check_layout([os.fspath(a) for a in inputs], outdir, out_real)
    result = Plan(Path(out_real))
    seen: set[str] = set()
    owner: dict[str, tuple[str, str]] = {}  # casefolded output -> (input, output)

    def add(source: str, rel: str, fmt: str) -> None:
        key = os.path.abspath(source)
        if key in seen:
            return
        seen.add(key)
        out_fmt = output_format(fmt, choice)
        parent = PurePosixPath(rel).parent
        rel_out = str(parent / namer(PurePosixPath(rel).name, fmt, out_fmt))
        rel_out = rel_out[2:] if rel_out.startswith("./") else rel_out
        # compared without case: on a case-insensitive OUTDIR (SMB shares, macOS, Windows)
        # a.PNG and A.jpg would both write the same file, and one output would replace the other
        key_out = rel_out.casefold()
        if key_out in owner:
            first, first_rel = owner[key_out]
            same = "" if first_rel == rel_out else f" (as {first_rel}: names that differ only " \
                "in case are one file on many file systems)"
            result.rejected.append((source, f"its output {rel_out} is already the output of "
                                            f"{first}{same}; rename one of them"))
            return
        owner[key_out] = (source, rel_out)
        result.jobs.append(Job(source, key, rel_out, fmt, out_fmt))

    for arg in map(os.fspath, inputs):
        if not os.path.isdir(arg):
            fmt = _image_format(arg)
            if fmt is None:
                ext = Path(arg).suffix or "none"
                result.rejected.append((arg, f"unknown extension {ext!r}: not one of "
                                             f"{', '.join(sorted(EXTENSIONS))} (nor a DICOM file)"))
            else:
                add(arg, Path(arg).name, fmt)
            continue
        for root, dirs, files in os.walk(arg, followlinks=False):
            if root != arg and is_outdir(root):
                # Another run made it its OUTDIR after its parent was listed. Looked for once
                # this folder is listed: a run writes its manifest before any output, so a
                # listing that holds an output comes after the marker.
                result.ignored.append((root, _EARLIER_OUTDIR))
                dirs[:] = []
                continue
            keep = []
            for d in sorted(dirs):
                full = os.path.join(root, d)
                if os.path.islink(full):
                    result.ignored.append((full, "symlinked folder, not followed"))
                elif d.startswith("."):
                    result.ignored.append((full, "hidden folder"))
                elif os.path.realpath(full) in excluded:
                    continue  # OUTDIR itself
                elif is_outdir(full):
                    result.ignored.append((full, _EARLIER_OUTDIR))
                else:
                    keep.append(d)
            dirs[:] = keep
            for name in sorted(files):
                full = os.path.join(root, name)
                if name.startswith("."):
                    result.ignored.append((full, "hidden file"))
                    continue
                if name.upper() == "DICOMDIR":
                    result.ignored.append((full, "DICOMDIR index (no image)"))
                    continue
                kind = _special(full)
                if kind is not None:
                    result.ignored.append((full, f"not a regular file ({kind})"))
                    continue
                fmt = _image_format(full)
                if fmt is None:
                    result.ignored.append((full, "not an image (extension)"))
                    continue
                rel = Path(os.path.relpath(full, arg)).as_posix()
                add(full, rel, fmt)
    named = {os.path.abspath(path) for path, _ in result.rejected}
    result.ignored = [(p, why) for p, why in result.ignored if os.path.abspath(p) not in named]
    return result
