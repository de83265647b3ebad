"""Writing: :func:`write_image` picks format and bit depth, quantises, encodes in memory
(PNG, JPEG, TIFF, JSRT here; DICOM through :mod:`.dicom_derived`) and hands the bytes to
:func:`write_atomic`.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..arrays import _plain, to_numpy
from ..stretch import check_bits
from .dicom_derived import _dicom_dataset, _pydicom3
from .errors import ImageWriteError
from .jsrt import JSRT_BITS, JSRT_SHAPE
from .radiograph import EXTENSIONS, FORMATS, Radiograph


def _host_pixels(path, pixels: Any) -> np.ndarray:
    """``pixels`` as a plain NumPy array: any array the library returns (NumPy, CuPy, torch on
    any device, with grad or in bfloat16), which ``np.asarray`` alone refuses or, for a masked
    array, reads without its mask."""
    try:
        a, _ = _plain(pixels)
    except ValueError as e:
        raise ImageWriteError(path, str(e)) from None
    return to_numpy(a)


def _checked_bits(path, bits: Any) -> int | None:
    """``bits`` as an int (None stays None): 12.5 or "12" would fail deep in the encoders, and
    True would pass every range check as a 1-bit depth."""
    if bits is None:
        return None
    try:
        return check_bits(bits)
    except ValueError as e:
        raise ImageWriteError(path, str(e)) from None


def _target_bits(fmt: str, bits: int) -> int:
    if fmt == "jpeg":
        return 8
    if fmt == "jsrt":
        return JSRT_BITS
    if fmt in ("png", "tiff"):
        if bits == 32:
            return 32 if fmt == "tiff" else 16
        return 8 if bits <= 8 else bits
    if fmt == "dicom":
        return 16 if bits == 32 else bits
    raise ValueError(f"unknown format {fmt!r}")


def _quantise(path, pixels: np.ndarray, in_bits: int | None, bits: int) -> np.ndarray:
    """Pixels -> the target bit depth: uint8/uint16 on [0, 2**bits-1], or float32 if bits == 32.

    Float pixels are taken to be on [0, 1] (clipped); integer pixels on [0, 2**in_bits - 1].
    """
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ImageWriteError(path, f"pixels must be 2-D, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageWriteError(path, "pixels contain NaN or Inf")
        x = np.clip(a.astype(np.float64 if bits > 16 else np.float32), 0.0, 1.0)
        if bits == 32:
            return x.astype(np.float32)
        top = 2 ** bits - 1
        q = np.rint(x * np.float64(top) if bits > 8 else x * np.float32(top))
    elif a.dtype.kind in "iub":
        if in_bits is None or in_bits == 32:
            in_bits = 8 if a.dtype.itemsize == 1 else 16
        top_in = 2 ** in_bits - 1
        if a.size and (int(a.min()) < 0 or int(a.max()) > top_in):
            raise ImageWriteError(path, f"integer pixels outside [0, {top_in}] for {in_bits} bits")
        if bits == 32:
            return (a.astype(np.float64) / top_in).astype(np.float32)
        top = 2 ** bits - 1
        if in_bits == bits:
            q = a
        else:
            q = np.rint(a.astype(np.float64) * (top / top_in))
    else:
        raise ImageWriteError(path, f"unsupported pixel dtype {a.dtype}")
    return np.ascontiguousarray(q.astype(np.uint8 if bits <= 8 else np.uint16))


def _encode_png(f, q: np.ndarray, bits: int) -> None:
    from PIL import Image, PngImagePlugin

    h, w = q.shape
    if bits <= 8:
        Image.frombytes("L", (w, h), q.astype(np.uint8).tobytes()).save(f, format="PNG")
        return
    info = None
    data = q.astype(np.uint16)
    if bits < 16:  # scale up to 16 bits by bit replication and record sBIT (PNG standard)
        shift = 16 - bits
        data = (data << np.uint16(shift)) | (data >> np.uint16(bits - shift))
        info = PngImagePlugin.PngInfo()
        info.add(b"sBIT", bytes([bits]))
    im = Image.frombytes("I;16", (w, h), data.astype("<u2").tobytes())
    im.save(f, format="PNG", pnginfo=info) if info is not None else im.save(f, format="PNG")


def _encode_tiff(f, q: np.ndarray, bits: int) -> None:
    import tifffile

    extratags = []
    if 8 < bits < 16:
        extratags.append((281, "H", 1, 2 ** bits - 1, True))  # MaxSampleValue
    tifffile.imwrite(f, q, photometric="minisblack", extratags=extratags)


def _encode_jpeg(f, q: np.ndarray) -> None:
    from PIL import Image

    h, w = q.shape
    Image.frombytes("L", (w, h), q.tobytes()).save(f, format="JPEG", quality=95)


def _encode_jsrt(path, f, q: np.ndarray) -> None:
    if q.shape != JSRT_SHAPE:
        raise ImageWriteError(path, f"JSRT raw images are 2048x2048, got {q.shape[1]}x{q.shape[0]}")
    f.write((np.uint16(4095) - q.astype(np.uint16)).astype(">u2").tobytes())


def write_image(path, pixels, like: Radiograph | None = None, *, format: str | None = None,
                bits: int | None = None, method: str | None = None,
                parameters: Mapping | str | None = None) -> Path:
    """Write ``pixels`` to ``path`` atomically (temporary file in the same folder, then rename).

    ``pixels``: 2-D float array on [0, 1] (clipped), or integers at ``like.bits`` (or at
    ``bits``, or at the dtype's 8/16 bits without either); NumPy, CuPy or torch (copied to the
    host), a masked array only without masked pixels. The format is ``format``, else the
    path's extension, else ``like.format``; the bit depth is ``bits``, else ``like.bits``, else
    8/16/32 from the dtype, adapted to what the format holds (PNG 8..16, JPEG 8, TIFF 8/12/16/32,
    DICOM 1..16, JSRT 12). DICOM output is a derived image of ``like.dataset`` (SPEC section 8);
    ``method`` and ``parameters`` go into its DerivationDescription. Never overwrites
    ``like.path``. Returns the path written.
    """
    out = Path(path)
    fmt = format or EXTENSIONS.get(out.suffix.lower()) or (like.format if like is not None else None)
    if fmt is None:
        raise ImageWriteError(out, f"cannot tell the output format from extension {out.suffix!r}")
    fmt = {"dcm": "dicom", "jpg": "jpeg", "tif": "tiff"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ImageWriteError(out, f"unknown output format {fmt!r}")
    a = _host_pixels(out, pixels)
    bits = _checked_bits(out, bits)
    in_bits = like.bits if like is not None else bits
    if bits is None:
        if like is not None:
            bits = like.bits
        elif a.dtype.kind == "f":
            bits = 32 if fmt == "tiff" else 16
        else:
            bits = 8 if a.dtype.itemsize == 1 else 16
    if not (1 <= bits <= 16 or bits == 32):
        raise ImageWriteError(out, f"unsupported bit depth {bits}")
    bits = _target_bits(fmt, bits)
    if like is not None and like.path and out.exists():
        try:
            if os.path.samefile(out, like.path):
                raise ImageWriteError(out, "refusing to overwrite the source image")
        except FileNotFoundError:
            pass
    q = _quantise(out, a, in_bits, bits)
    if min(q.shape) < 2:
        raise ImageWriteError(out, f"image is {q.shape[1]}x{q.shape[0]}: too small")
    ds = _dicom_dataset(out, q, bits, like, method, parameters) if fmt == "dicom" else None

    write_atomic(out, _encode(out, fmt, q, bits, ds))
    return out


def _encode(out: Path, fmt: str, q: np.ndarray, bits: int, ds: Any) -> io.BytesIO:
    """The file's bytes, encoded in memory (encoders want a seekable buffer, not a bare fd)."""
    f = io.BytesIO()
    if fmt == "png":
        _encode_png(f, q, bits)
    elif fmt == "tiff":
        _encode_tiff(f, q, bits)
    elif fmt == "jpeg":
        _encode_jpeg(f, q)
    elif fmt == "jsrt":
        _encode_jsrt(out, f, q)
    else:
        ds.save_as(f, enforce_file_format=True) if _pydicom3() else \
            ds.save_as(f, write_like_original=False)
    return f


#: Bytes of the output's name kept in its temporary file's name: a name near the file system's
#: 255-byte limit plus the dot, the random part and ".tmp" would be too long to create.
_TMP_STEM_BYTES = 200


def _tmp_stem(name: str) -> str:
    """``name``, shortened to at most :data:`_TMP_STEM_BYTES` bytes on the file system."""
    while len(os.fsencode(name)) > _TMP_STEM_BYTES:
        name = name[:-1]
    return name


def write_atomic(out: Path, data: io.BytesIO) -> None:
    """Write ``data`` to a temporary file in ``out``'s folder, then rename it to ``out``.

    Readers never see a half-written image, and a failure leaves no temporary file behind.
    OS errors (missing or read-only folder, full disk, ``out`` a folder) become
    :class:`ImageWriteError` naming ``out``, not an error about the hidden temporary file.
    """
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ImageWriteError(out, f"cannot write: the folder {folder} {what}")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{_tmp_stem(out.name)}.", suffix=".tmp")
    except OSError as e:
        raise ImageWriteError(out, f"cannot write in the folder {folder} (not writable?): "
                                   f"{e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ImageWriteError(out, f"cannot write: {e.strerror or e}") from None
        raise
