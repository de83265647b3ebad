"""Reading: :func:`read_image` tells the format from the signature or extension and hands the file
to its reader; :func:`stored_format` says which format that is without decoding anything;
:func:`image_files` lists readable files, :func:`file_sha256` hashes one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from .dicom import _read_dicom
from .errors import ImageReadError
from .jsrt import _read_jsrt
from .pillow import _read_pillow
from .radiograph import EXTENSIONS, Radiograph
from .tiff import _quiet_tifffile, _read_tiff


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def _stored_format(head: bytes, ext: str) -> str | None:
    """The format :func:`read_image` reads a file as, from its first 132 bytes and its
    extension (lower case): the signature's, else ``dicom`` (a raw data set) for ``.dcm``
    and ``.dicom`` and ``jsrt`` for ``.img``, which have none; None when neither tells."""
    fmt = _sniff(head)
    if fmt is None and EXTENSIONS.get(ext) in ("dicom", "jsrt"):
        return EXTENSIONS[ext]
    return fmt


def _special_kind(mode: int) -> str | None:
    """What a file that is not a regular file or a folder is (FIFO, socket, device), else None."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Files below ``folder`` (recursively) whose extension is one of :data:`EXTENSIONS`, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks.

    A FIFO, socket or device raises :class:`ImageReadError` (without blocking on it).
    """
    h = hashlib.sha256()
    # O_NONBLOCK: a named pipe must not block the caller until a writer turns up (maybe never)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as f:
        kind = _special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise ImageReadError(path, f"not a regular file ({kind}), not an image file")
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stored_format(path: str | os.PathLike) -> str | None:
    """The format :func:`read_image` will read ``path`` as, from its first 132 bytes and its
    name, without decoding it (one small read).

    Returns
    -------
    str or None
        A :data:`~xvert_gpu.io.FORMATS` name: the signature's (PNG, JPEG, TIFF, DICOM with
        preamble), else ``dicom`` for a ``.dcm``/``.dicom`` name and ``jsrt`` for ``.IMG``.
        None when read_image would refuse the file for its type (no signature the name
        allows), or it cannot be opened; a FIFO or other special file is not opened (None).
    """
    p = str(path)
    try:
        if _special_kind(os.stat(p).st_mode) is not None:  # opening a FIFO could block
            return None
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return None
    return _stored_format(head, os.path.splitext(p)[1].lower())


def read_image(path: str | os.PathLike) -> Radiograph:
    """Read a radiograph at its true bit depth.

    The format comes from the file's signature (PNG, JPEG, TIFF, DICOM with preamble); files
    without one are taken by extension: ``.IMG`` is JSRT raw, and ``.dcm``/``.dicom`` is DICOM
    without the 128-byte preamble and ``DICM`` prefix (read as a raw data set, pydicom's
    ``force=True``). The file is only read, never changed.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    Radiograph
        One grey channel at the stored bit depth (see the module docstring for each format).

    Raises
    ------
    ImageReadError
        For any failure, naming the file and the reason.
    """
    p = str(path)
    try:
        if not os.path.exists(p):
            raise ImageReadError(p, "file not found")
        if os.path.isdir(p):
            raise ImageReadError(p, "is a directory, not an image file")
        kind = _special_kind(os.stat(p).st_mode)
        if kind is not None:  # opening a FIFO would block until a writer comes, maybe never
            raise ImageReadError(p, f"not a regular file ({kind}), not an image file")
        size = os.path.getsize(p)
        if size == 0:
            raise ImageReadError(p, "empty file (0 bytes)")
        with open(p, "rb") as f:
            head = f.read(132)
        ext = os.path.splitext(p)[1].lower()
        by_ext = EXTENSIONS.get(ext)
        sniffed = _sniff(head)
        fmt = _stored_format(head, ext)
        if fmt is None:
            if by_ext is None:
                raise ImageReadError(p, f"unknown file type (extension {ext or 'none'!r}, "
                                        "no known image signature)")
            raise ImageReadError(p, f"not a {by_ext.upper()} file: bad signature "
                                    "(random or corrupt bytes)")
        if fmt in ("png", "jpeg"):
            return _read_pillow(p, fmt)
        if fmt == "tiff":
            with _quiet_tifffile():
                return _read_tiff(p)
        if fmt == "dicom":
            return _read_dicom(p, preamble=sniffed == "dicom")
        return _read_jsrt(p)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(p, "out of memory while decoding") from None
    except Exception as e:  # noqa: BLE001 - every failure becomes an ImageReadError
        raise ImageReadError(p, f"cannot read image: {type(e).__name__}: {e}") from None
