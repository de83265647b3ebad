"""Image I/O at true bit depth (SPEC sections 1 and 8).

:func:`read_image` returns a :class:`Radiograph`: one grey channel at the bit depth the file
stores, plus where it came from. :meth:`Radiograph.as_float` gives float32 on [0, 1], divided by
the largest value the stored bit depth allows (255, 4095, 65535, ...), never by the image maximum.
:func:`write_image` writes pixels in the format and bit depth of an input (``like=``), atomically.

Formats
-------
=========  =========================================================================
png        8 and 16 bit grey (Pillow). A 16-bit PNG is 16-bit unless its ``sBIT`` chunk
           says fewer significant bits: then it is read at that depth (values scaled up
           to 16 bits, as the PNG standard asks, are shifted back). 12-bit data is
           written as a 16-bit PNG scaled up with ``sBIT = 12``, so other viewers show it
           right and it reads back as exactly the same 12-bit pixels.
jpeg       8-bit baseline/progressive JPEG (Pillow). Written at quality 95 (lossy).
tiff       8 and 16 bit unsigned, float32 on [0, 1] (tifffile). ``MaxSampleValue``
           (tag 281) of ``2**b - 1`` marks b-bit data in 16-bit samples (written so for
           12 bits). MINISWHITE is inverted so that bone is bright. LZW, JPEG and other
           codecs need ``imagecodecs`` (optional: ``pip install xvert_gpu[tiff]``); without
           it the page is decoded by Pillow when Pillow gives the same samples at the same
           bit depth. One image per file: reduced-resolution pages (thumbnails) are
           ignored, further full-size pages or frames are refused.
dicom      pydicom (optional: ``pip install xvert_gpu[dicom]``); compressed transfer
           syntaxes through the pylibjpeg plugins when installed (JPEG 2000 needs
           pylibjpeg-openjpeg or python-gdcm). A ``.dcm``/``.dicom`` file without the
           128-byte preamble and ``DICM`` prefix is read as a raw data set. The sign
           and direction of Rescale Slope/Intercept are applied (the modality values
           are an affine map of the stored ones, so on the [0, 1] scale only the
           direction matters);
           signed data is shifted onto ``[0, 2**BitsStored - 1]``; MONOCHROME1 is
           inverted; BitsStored gives the range.
jsrt       JSRT raw ``.IMG``: 2048x2048, 12 bits in big-endian 16-bit words, no header.
           JSRT stores film density (bone dark), so it is inverted on read
           (``4095 - raw``) and back again on write.
=========  =========================================================================

RGB/RGBA (or grey+alpha) images whose colour channels are equal are grey (for JPEG a
difference of up to ``JPEG_GREY_TOLERANCE`` is allowed); real colour is an error.

Every read failure raises :class:`ImageReadError` (a ValueError) naming the file and the reason.
Images with more than :data:`MAX_PIXELS` pixels are refused from the header, before any
decoding; images with a side shorter than 2 are refused.

Not supported (refused with a clear reason): 16-bit colour or grey+alpha PNGs (Pillow reduces
them to 8 bits), 12-bit JPEG, multi-page or multi-frame TIFF, multi-frame DICOM, DICOM with more
than 16 bits stored or float pixel data, palette-colour DICOM. VOI LUT (windowing) and Modality
LUT Sequences are not applied and are dropped from derived DICOM output.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["Radiograph", "ImageReadError", "ImageWriteError", "read_image", "write_image",
           "image_files", "MAX_PIXELS", "FORMATS", "EXTENSIONS"]

#: Largest image (width * height) read; larger headers are refused before decoding. 2**26 is
#: 8192 x 8192, well above any radiograph detector, and below Pillow's decompression-bomb limit.
MAX_PIXELS = 2 ** 26

#: Largest channel difference at which an RGB JPEG still counts as grey (JPEG is lossy).
JPEG_GREY_TOLERANCE = 2

JSRT_SHAPE = (2048, 2048)
JSRT_BITS = 12

FORMATS = ("png", "jpeg", "tiff", "dicom", "jsrt")

#: File name extensions (lower case) and the format each one means.
EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg",
    ".tif": "tiff", ".tiff": "tiff", ".dcm": "dicom", ".dicom": "dicom", ".img": "jsrt",
}

#: Extension used when writing each format to a new name.
DEFAULT_EXTENSION = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm",
                     "jsrt": ".IMG"}

_DEFAULT_METHOD = "XVertNet unsupervised spine contrast enhancement"


class ImageReadError(ValueError):
    """A file could not be read as a radiograph. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (Dask, multiprocessing)
        return (type(self), (self.path, self.reason))


class ImageWriteError(ValueError):
    """An image could not be written. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass
class Radiograph:
    """One grey radiograph at its stored bit depth.

    ``pixels``: 2-D array, uint8 (bits <= 8) or uint16 (bits 9..16) on ``[0, 2**bits - 1]``, or
    float32 on [0, 1] for a float TIFF (``bits == 32``). Bone is bright (MONOCHROME1, JSRT and
    MINISWHITE data are inverted on read; ``inverted`` says so).
    ``dataset``: the pydicom Dataset of a DICOM (pixel data still in it), else None.
    """

    pixels: np.ndarray
    bits: int
    format: str
    path: str | None = None
    dataset: Any = None
    inverted: bool = False
    info: dict = field(default_factory=dict)

    @property
    def max_value(self) -> float:
        """The largest value the stored bit depth allows (1.0 for float)."""
        return 1.0 if self.bits == 32 else float(2 ** self.bits - 1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape

    def as_float(self) -> np.ndarray:
        """float32 on [0, 1]: the pixels divided by :attr:`max_value` (SPEC section 1)."""
        if self.bits == 32:
            return np.asarray(self.pixels, dtype=np.float32)
        return self.pixels.astype(np.float32) / np.float32(self.max_value)

    @property
    def float01(self) -> np.ndarray:
        """Same as :meth:`as_float`."""
        return self.as_float()


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

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


def _check_size(path, rows: int, cols: int, what: str = "image") -> None:
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(path, f"{what} header claims {cols}x{rows} = {rows * cols} pixels, "
                                   f"more than the limit of {MAX_PIXELS} (xvert_gpu.io.MAX_PIXELS)")
    if rows < 2 or cols < 2:
        raise ImageReadError(path, f"{what} is {cols}x{rows}: too small (each side must be >= 2)")


def _to_grey(path, arr: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """(H, W, C) with C in 2..4 (grey+alpha, RGB, RGBA) -> (H, W) if the colour channels agree."""
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported pixel array shape {arr.shape}")
    c = arr.shape[2]
    if c in (1, 2):  # grey or grey + alpha: drop alpha
        return np.ascontiguousarray(arr[..., 0])
    rgb = arr[..., :3]
    r = rgb[..., 0]
    if tolerance == 0:
        if np.array_equal(r, rgb[..., 1]) and np.array_equal(r, rgb[..., 2]):
            return np.ascontiguousarray(r)
        diff = int(max(np.abs(r.astype(np.int32) - rgb[..., k]).max() for k in (1, 2)))
    else:
        wide = rgb.astype(np.int32)
        diff = int(max(np.abs(wide[..., 0] - wide[..., k]).max() for k in (1, 2)))
        if diff <= tolerance:
            grey = (wide.sum(axis=2) + 1) // 3
            return grey.astype(arr.dtype)
    raise ImageReadError(path, f"colour image: the colour channels differ (by up to {diff}); "
                               "only grey radiographs are supported")


def _png_chunks(path) -> tuple[int, int, dict]:
    """(bit depth, colour type, {chunk type: data}) of the chunks before the first IDAT."""
    out = {}
    with open(path, "rb") as f:
        f.seek(8)
        bit_depth = colour_type = None
        for _ in range(10000):
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            n = int.from_bytes(hdr[:4], "big")
            ctype = hdr[4:8]
            if ctype == b"IDAT":
                break
            if n > 1 << 24:
                break
            data = f.read(n)
            f.seek(4, os.SEEK_CUR)
            if ctype == b"IHDR" and len(data) >= 13:
                bit_depth, colour_type = data[8], data[9]
            out[ctype.decode("latin-1")] = data
    if bit_depth is None:
        raise ImageReadError(path, "corrupt PNG: no IHDR chunk")
    return bit_depth, colour_type, out


def _read_pillow(path, fmt: str) -> Radiograph:
    from PIL import Image

    try:
        im = Image.open(path)  # lazy: reads the header only
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"decompression bomb refused: {e}") from None
    with im:
        actual = (im.format or "").lower()
        if actual not in ("png", "jpeg"):
            raise ImageReadError(path, f"{im.format} image: not a PNG or JPEG")
        fmt = actual
        cols, rows = im.size
        _check_size(path, rows, cols, fmt.upper())
        bits = 8
        sbit = None
        if fmt == "png":
            depth, ctype, chunks = _png_chunks(path)
            if depth == 16 and ctype != 0:
                raise ImageReadError(path, "16-bit PNG with colour or alpha channels is not supported "
                                           "(store grey radiographs as single-channel PNG)")
            if depth == 16:
                bits = 16
                if "sBIT" in chunks and len(chunks["sBIT"]) >= 1 and 1 <= chunks["sBIT"][0] < 16:
                    sbit = chunks["sBIT"][0]
        if fmt == "jpeg" and im.mode not in ("L", "RGB", "1"):
            raise ImageReadError(path, f"unsupported JPEG mode {im.mode!r}")
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise ImageReadError(path, f"decompression bomb refused: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageReadError(path, f"corrupt or truncated {fmt.upper()}: {e}") from None
        mode = im.mode
        if mode == "1":
            im = im.convert("L")
        elif mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            pass
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise ImageReadError(path, f"unsupported {fmt.upper()} mode {mode!r}")
        arr = np.asarray(im)
    tol = JPEG_GREY_TOLERANCE if fmt == "jpeg" else 0
    arr = _to_grey(path, arr, tol)
    if bits == 16:
        if arr.dtype != np.uint16:
            if arr.min() < 0 or arr.max() > 65535:
                raise ImageReadError(path, "16-bit PNG decoded out of range")
            arr = arr.astype(np.uint16)
        if sbit is not None:
            if int(arr.max()) >= 2 ** sbit:  # scaled up to 16 bits, as the PNG standard says
                arr = arr >> np.uint16(16 - sbit)
            bits = sbit
            if bits <= 8:
                arr = arr.astype(np.uint8)
    else:
        arr = arr.astype(np.uint8, copy=False)
    return Radiograph(np.ascontiguousarray(arr), bits, fmt, str(path))


#: Guards the tifffile logger level while reads in several threads silence it.
_TIFF_LOG_LOCK = threading.Lock()
_tiff_log_state = {"depth": 0, "level": logging.NOTSET}


@contextlib.contextmanager
def _quiet_tifffile():
    """Silence tifffile's logger (``<tifffile.TiffPages @...> invalid offset ...``) for a read.

    Bad files get an :class:`ImageReadError` that says what is wrong; tifffile's own warnings
    would only reach the console first. The logger's level (not a filter) is raised because
    tifffile also logs from its decoding threads; nested and concurrent reads share one
    counter so that the level the caller set is put back when the last read ends.
    """
    log = logging.getLogger("tifffile")
    with _TIFF_LOG_LOCK:
        if _tiff_log_state["depth"] == 0:
            _tiff_log_state["level"] = log.level
            log.setLevel(logging.CRITICAL)
        _tiff_log_state["depth"] += 1
    try:
        yield
    finally:
        with _TIFF_LOG_LOCK:
            _tiff_log_state["depth"] -= 1
            if _tiff_log_state["depth"] == 0:
                log.setLevel(_tiff_log_state["level"])


def _tiff_single_page(path, tif) -> Any:
    """The one full-size page of a TIFF; files with more (stacks, series) are refused.

    Reduced-resolution pages (NewSubfileType bit 0: thumbnails, pyramid levels) are previews
    of the image, not further images, so they do not count.
    """
    pages = tif.pages
    if not pages:
        raise ImageReadError(path, "TIFF without images")
    if len(pages) == 1:
        return pages.first if hasattr(pages, "first") else pages[0]
    full = [p for p in pages if not getattr(p, "is_reduced", False)]
    if len(full) == 1:
        return full[0]
    n = len(full) or len(pages)
    raise ImageReadError(path, f"multi-page TIFF ({n} pages) is not supported "
                               "(one radiograph per file)")


def _tiff_codec_name(page, what: str = "compression") -> str:
    value = getattr(page, what, None)
    return f"{getattr(value, 'name', value)} {what}"


def _tiff_missing_codec(page) -> str | None:
    """The compression or predictor that tifffile cannot decode here (no imagecodecs), or None."""
    import tifffile

    if page.compression not in tifffile.TIFF.DECOMPRESSORS:
        return _tiff_codec_name(page, "compression")
    if page.predictor not in tifffile.TIFF.UNPREDICTORS:
        return _tiff_codec_name(page, "predictor")
    return None


def _pillow_rawmode(im) -> str:
    """The raw mode Pillow unpacks the first tile with ('' if unknown)."""
    tile = getattr(im, "tile", None) or []
    args = tile[0][3] if tile and len(tile[0]) > 3 else None
    raw = args[0] if isinstance(args, tuple) and args else args
    return raw if isinstance(raw, str) else ""


def _read_tiff_pillow(path, page, missing: str) -> np.ndarray:
    """Decode the page with Pillow (libtiff) when tifffile lacks a codec for it.

    Pillow decodes LZW, PackBits, deflate and (usually) JPEG itself. Its samples are used only
    when they have the page's own dtype and shape (Pillow reduces 16-bit colour to 8 bits, for
    one); otherwise the error names the codec and the package that decodes it.
    """
    from PIL import Image

    want = np.dtype(page.dtype)
    advice = (f"TIFF with {missing} needs the 'imagecodecs' package to decode "
              "(pip install imagecodecs, or pip install 'xvert_gpu[tiff]')")
    if int(page.bitspersample) != want.itemsize * 8:  # 1/2/4/12-bit samples: Pillow rescales
        raise ImageReadError(path, f"{advice}; Pillow cannot decode {page.bitspersample}-bit "
                                   "samples at their stored depth")
    try:
        with Image.open(path) as im:
            if getattr(page, "index", 0):  # the full-size page after a thumbnail
                im.seek(page.index)
            rawmode = _pillow_rawmode(im)
            im.load()
            arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - Pillow raises many types
        raise ImageReadError(path, f"{advice}; Pillow could not decode it either "
                                   f"({type(e).__name__}: {e})") from None
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)  # 'I;16B' -> native uint16
    spp = int(page.samplesperpixel)
    shape = (int(page.imagelength), int(page.imagewidth)) + ((spp,) if spp > 1 else ())
    if arr.dtype != want or arr.shape != shape:
        raise ImageReadError(path, f"{advice}; Pillow decodes it only as {arr.dtype} {arr.shape}, "
                                   f"not as the stored {want} {shape}")
    if rawmode.endswith(";I") and want.kind == "u":
        # Pillow inverts 8-bit MINISWHITE while decoding; the caller inverts the stored values.
        arr = np.iinfo(want).max - arr
    return arr


def _decode_tiff_page(path, page) -> np.ndarray:
    """The page's samples as (H, W) or (H, W, S), by tifffile, else by Pillow (codec missing)."""
    missing = _tiff_missing_codec(page)
    if missing is None:
        try:
            arr = page.asarray()
        except Exception as e:  # noqa: BLE001 - tifffile raises many types
            # Some codecs look available but import their library only when used (zstd).
            if not (isinstance(e, ImportError) or "imagecodecs" in str(e)):
                raise ImageReadError(path, f"corrupt or truncated TIFF: {type(e).__name__}: {e}") \
                    from None
            missing = _tiff_codec_name(page, "compression")
        else:
            if arr.ndim == 3 and int(page.planarconfig) == 2:  # separate planes: (S, H, W)
                arr = np.moveaxis(arr, 0, -1)
            return arr
    return _read_tiff_pillow(path, page, missing)


def _tiff_to_grey(path, page, arr: np.ndarray) -> np.ndarray:
    """(H, W, S) samples of one page -> (H, W), refusing frame stacks stored as one page.

    Separate sample planes, and extra samples marked UNSPECIFIED rather than alpha, are how a
    stack of frames gets into one page: tifffile.imwrite stores a (3, H, W) or (4, H, W) array
    as planar RGB. If those planes differ the file is refused rather than read as one frame.
    """
    if arr.ndim == 3 and arr.shape[2] > 1:
        extras = tuple(int(e) for e in (getattr(page, "extrasamples", ()) or ()))
        planar = int(page.planarconfig) == 2
        n = arr.shape[2]
        if (planar or 0 in extras) and not all(np.array_equal(arr[..., 0], arr[..., k])
                                                for k in range(1, n)):
            colour = " or a colour image" if int(page.photometric) == 2 else ""
            raise ImageReadError(path, f"multi-frame TIFF: one page holds {n} image planes that "
                                       f"differ (a stack of {n} frames{colour}, as "
                                       f"tifffile.imwrite stores a ({n}, H, W) array); multi-page "
                                       "or multi-frame TIFFs are not supported "
                                       "(one radiograph per file)")
    return _to_grey(path, arr)


def _read_tiff(path) -> Radiograph:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:  # noqa: BLE001 - tifffile raises many types
        raise ImageReadError(path, f"corrupt TIFF: {type(e).__name__}: {e}") from None
    with tif:
        page = _tiff_single_page(path, tif)
        shape = tuple(page.shape)
        if len(shape) not in (2, 3):
            raise ImageReadError(path, f"unsupported TIFF page shape {shape}")
        rows, cols = int(page.imagelength), int(page.imagewidth)
        _check_size(path, rows, cols, "TIFF")
        size = os.path.getsize(path)
        offsets = getattr(page, "dataoffsets", ()) or ()
        counts = getattr(page, "databytecounts", ()) or ()
        if offsets and counts and max(int(o) + int(c) for o, c in zip(offsets, counts)) > size:
            raise ImageReadError(path, "truncated TIFF: image data runs past the end of the file")
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if dtype is None or not (dtype in (np.uint8, np.uint16) or dtype.kind == "f"):
            raise ImageReadError(path, f"unsupported TIFF sample type {dtype} "
                                       "(8/16-bit unsigned or float)")
        maxsample = None
        tag = page.tags.get(281)  # MaxSampleValue
        if tag is not None:
            v = tag.value
            maxsample = int(v[0] if isinstance(v, (tuple, list)) else v)
        photometric = int(page.photometric) if page.photometric is not None else 1
        arr = _tiff_to_grey(path, page, _decode_tiff_page(path, page))
    inverted = False
    if dtype.kind == "f":
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ImageReadError(path, "float TIFF contains NaN or Inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(path, f"float TIFF values must lie on [0, 1]; found [{lo:g}, {hi:g}]")
        if photometric == 0:  # MINISWHITE
            arr = np.float32(1.0) - arr
            inverted = True
        return Radiograph(np.ascontiguousarray(arr), 32, "tiff", str(path), inverted=inverted)
    bits = 8 if dtype == np.uint8 else 16
    if bits == 16 and maxsample is not None and 0 < maxsample < 65535 \
            and (maxsample + 1) & maxsample == 0 and int(arr.max()) <= maxsample:
        bits = maxsample.bit_length()
    if photometric == 0:
        arr = (2 ** bits - 1 - arr.astype(np.int32)).astype(dtype)
        inverted = True
    return Radiograph(np.ascontiguousarray(arr), bits, "tiff", str(path), inverted=inverted)


def _import_pydicom(path):
    try:
        import pydicom  # noqa: F401
    except ImportError:
        raise ImageReadError(path, "DICOM support needs pydicom: pip install 'xvert_gpu[dicom]' "
                                   "(pydicom, pylibjpeg, pylibjpeg-libjpeg)") from None
    return pydicom


_JPEG_DECODERS = ("pylibjpeg pylibjpeg-libjpeg", "python-gdcm")
_JPEG_LS_DECODERS = ("pylibjpeg pylibjpeg-libjpeg", "pyjpegls", "python-gdcm")
_JPEG2000_DECODERS = ("pylibjpeg pylibjpeg-openjpeg", "python-gdcm")

#: pip packages that give pydicom a decoder for each compressed transfer syntax, first choice
#: first (pydicom's table of pixel data plugins; Pillow also decodes JPEG and JPEG 2000, but
#: is a poorer decoder and is installed anyway).
_DICOM_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": _JPEG_DECODERS,  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51": _JPEG_DECODERS,  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": _JPEG_DECODERS,  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": _JPEG_DECODERS,  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": _JPEG_LS_DECODERS,  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": _JPEG_LS_DECODERS,  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": _JPEG2000_DECODERS,  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": _JPEG2000_DECODERS,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg pylibjpeg-openjpeg",),  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg pylibjpeg-openjpeg",),  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg pylibjpeg-openjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.5": ("pylibjpeg pylibjpeg-rle",),  # RLE Lossless (pydicom has its own)
}


def _dcmread(pydicom, path, preamble: bool):
    """Read a DICOM data set; one without the preamble and 'DICM' prefix is read as raw.

    read_image only sends a file without the preamble here because of its .dcm/.dicom
    extension, so ``force=True`` is what the name promises. Such a raw data set has no
    Transfer Syntax UID; pydicom needs one to decode the pixels, and the encoding it found
    while reading (implicit/explicit VR, byte order) says which it is.
    """
    try:
        ds = pydicom.dcmread(path, force=not preamble)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types
        if not preamble:
            raise ImageReadError(path, "not a DICOM file: no 128-byte preamble and 'DICM' prefix, "
                                       f"and unreadable as a raw data set ({type(e).__name__}: {e})"
                                 ) from None
        raise ImageReadError(path, f"corrupt or truncated DICOM: {type(e).__name__}: {e}") from None
    if not preamble and "PixelData" not in ds and "FloatPixelData" not in ds \
            and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "not a DICOM file: no 128-byte preamble and 'DICM' prefix, "
                                   "and no image (Pixel Data) when read as a raw data set")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        encoding = getattr(ds, "original_encoding", None)  # pydicom 3; pydicom 2 below
        implicit, little = encoding if encoding else (ds.is_implicit_VR, ds.is_little_endian)
        if meta is None:
            ds.file_meta = meta = FileMetaDataset()
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _dicom_compressed(tsyntax) -> bool:
    try:
        return bool(tsyntax.is_compressed)
    except (AttributeError, ValueError):  # not a known transfer syntax: pydicom cannot decode it
        return True


def _dicom_decoder_installed(tsyntax) -> bool | None:
    """Whether pydicom has a usable decoder for ``tsyntax`` here (None: it has none at all)."""
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
    except ImportError:
        from pydicom import config  # pydicom 2: the pixel data handler modules

        handlers = [h for h in config.pixel_data_handlers if h.supports_transfer_syntax(tsyntax)]
        return any(h.is_available() for h in handlers) if handlers else None
    try:
        return bool(get_decoder(tsyntax).is_available)
    except NotImplementedError:
        return None


def _dicom_decode_error(path, tsyntax, exc: Exception) -> ImageReadError:
    """The ImageReadError for a failed ``ds.pixel_array``: missing decoder, or corrupt data."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
    if not _dicom_compressed(tsyntax):
        return ImageReadError(path, f"corrupt or truncated DICOM pixel data: {detail}")
    what = f"{getattr(tsyntax, 'name', '') or 'unknown'}, transfer syntax {tsyntax}"
    installed = _dicom_decoder_installed(tsyntax)
    packages = _DICOM_DECODER_PACKAGES.get(str(tsyntax))
    if installed is None or (not installed and not packages):
        return ImageReadError(path, f"cannot decode DICOM pixel data ({what}): pydicom has no "
                                    "decoder for this transfer syntax")
    if not installed:
        choices = " (or: ".join(f"pip install {p}" for p in packages) + ")" * (len(packages) - 1)
        return ImageReadError(path, f"cannot decode DICOM pixel data ({what}): no decoder for it "
                                    f"is installed; {choices}")
    return ImageReadError(path, f"compressed DICOM pixel data ({what}) could not be decoded: "
                                f"corrupt or truncated ({detail})")


def _read_dicom(path, preamble: bool = True) -> Radiograph:
    """Read a DICOM file; ``preamble`` is False for a raw data set (no 'DICM' prefix)."""
    pydicom = _import_pydicom(path)
    ds = _dcmread(pydicom, path, preamble)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageReadError(path, "DICOM float pixel data is not supported")
        raise ImageReadError(path, "DICOM without pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_stored = int(ds.BitsStored)
        bits_alloc = int(ds.BitsAllocated)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"DICOM image attributes missing or invalid: {e}") from None
    _check_size(path, rows, cols * max(frames, 1), "DICOM")
    if frames != 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not supported")
    if not 1 <= bits_stored <= 16 or bits_alloc > 16 or bits_stored > bits_alloc:
        raise ImageReadError(path, f"unsupported DICOM bit depth: BitsStored {bits_stored}, "
                                   f"BitsAllocated {bits_alloc} (at most 16 supported)")
    if photometric == "PALETTE COLOR":
        raise ImageReadError(path, "colour image: PALETTE COLOR DICOM is not supported")
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - pydicom and its plugins raise many types
        raise _dicom_decode_error(path, tsyntax, e) from None
    arr = np.asarray(arr)
    if spp > 1 or arr.ndim == 3:
        arr = _to_grey(path, arr, JPEG_GREY_TOLERANCE if _dicom_compressed(tsyntax) else 0)
    if arr.shape != (rows, cols):
        raise ImageReadError(path, f"DICOM pixel array shape {arr.shape} != Rows x Columns "
                                   f"{rows}x{cols}")
    if arr.dtype.kind not in "iu":
        raise ImageReadError(path, f"unsupported DICOM pixel type {arr.dtype}")
    mask = (1 << bits_stored) - 1
    wide = arr.astype(np.int64)
    if signed:  # two's complement, with or without sign extension, onto [0, 2**bits - 1]
        wide = (wide + (1 << (bits_stored - 1))) & mask
    else:
        wide &= mask
    raw_slope = ds.get("RescaleSlope", None)
    slope = 1.0 if raw_slope is None or raw_slope == "" else float(raw_slope)
    if slope == 0:
        raise ImageReadError(path, "DICOM RescaleSlope is 0")
    inverted = False
    if slope < 0:  # modality values fall as stored values rise
        wide = mask - wide
    if photometric == "MONOCHROME1":
        wide = mask - wide
        inverted = True
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    info = {"photometric": photometric,
            "rescale_slope": slope,
            "rescale_intercept": float(ds.get("RescaleIntercept", 0) or 0),
            "signed": signed,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
    return Radiograph(wide.astype(dtype), bits_stored, "dicom", str(path), dataset=ds,
                      inverted=inverted, info=info)


def _read_jsrt(path) -> Radiograph:
    n = JSRT_SHAPE[0] * JSRT_SHAPE[1] * 2
    size = os.path.getsize(path)
    if size != n:
        what = "truncated" if size < n else "too long"
        raise ImageReadError(path, f"{what} JSRT raw image: {size} bytes, expected {n} "
                                   "(2048x2048 big-endian 16-bit words)")
    raw = np.fromfile(path, dtype=">u2").reshape(JSRT_SHAPE)
    if int(raw.max()) > 4095:
        raise ImageReadError(path, f"not a 12-bit JSRT image: values up to {int(raw.max())} > 4095")
    pixels = (np.uint16(4095) - raw.astype(np.uint16))
    return Radiograph(pixels, JSRT_BITS, "jsrt", str(path), inverted=True)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Files below ``folder`` (recursively) whose extension is one of :data:`EXTENSIONS`, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        size = os.path.getsize(p)
        if size == 0:
            raise ImageReadError(p, "empty file (0 bytes)")
        with open(p, "rb") as f:
            head = f.read(132)
        ext = os.path.splitext(p)[1].lower()
        by_ext = EXTENSIONS.get(ext)
        sniffed = fmt = _sniff(head)
        if fmt is None:
            if by_ext is None:
                raise ImageReadError(p, f"unknown file type (extension {ext or 'none'!r}, "
                                        "no known image signature)")
            if by_ext in ("png", "jpeg", "tiff"):
                raise ImageReadError(p, f"not a {by_ext.upper()} file: bad signature "
                                        "(random or corrupt bytes)")
            fmt = by_ext
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


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------

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


# Attributes that describe the source's pixel encoding or display and no longer hold.
_DROP = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "ModalityLUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "VOILUTSequence", "WindowCenterWidthExplanation", "PixelPaddingValue",
    "PixelPaddingRangeLimit", "SmallestImagePixelValue", "LargestImagePixelValue",
    "PlanarConfiguration", "NumberOfFrames", "FrameIncrementPointer", "IconImageSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PresentationLUTShape",
    "PresentationLUTSequence", "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "PixelAspectRatio", "DataSetTrailingPadding",
)

_SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage


#: Namespace of the name-based (version 5) UUIDs behind derived UIDs.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/xvert_gpu/derived-dicom")


def _uid(*parts: str) -> str:
    """A deterministic UID: ``2.25.`` + the integer of a name-based UUID (DICOM PS3.5 B.2).

    (``pydicom.uid.generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` and returns a random
    UUID, so it cannot give deterministic UIDs.)
    """
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


def derived_uids(source_sop_uid: str, source_series_uid: str) -> tuple[str, str]:
    """(SOP Instance UID, Series Instance UID) of the derived image: deterministic from the
    source UIDs and the toolkit version (SPEC section 8), different from the source's."""
    from . import __version__

    sop = _uid("xvert_gpu", __version__, "sop", str(source_sop_uid))
    series = _uid("xvert_gpu", __version__, "series", str(source_series_uid))
    return sop, series


def _derivation_text(method: str | None, params: Mapping | str | None) -> str:
    from . import __version__

    text = f"{method or _DEFAULT_METHOD} (xvert_gpu {__version__})"
    if isinstance(params, str) and params:
        text += f": {params}"
    elif params:
        text += ": " + ", ".join(f"{k}={v}" for k, v in params.items())
    return text[:1024]  # ST


def _dicom_dataset(path, q: np.ndarray, bits: int, like: Radiograph | None,
                   method: str | None, params) -> Any:
    try:
        import pydicom
    except ImportError:
        raise ImageWriteError(path, "writing DICOM needs pydicom: pip install 'xvert_gpu[dicom]'") \
            from None
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    src = like.dataset if like is not None else None
    ds = Dataset()
    if src is not None:
        for elem in src:
            if elem.keyword in _DROP or elem.tag.group == 0x7FE0:
                continue
            ds.add(copy.deepcopy(elem))
        src_sop = str(src.get("SOPInstanceUID", "")) or hashlib.sha256(q.tobytes()).hexdigest()
        src_series = str(src.get("SeriesInstanceUID", "")) or src_sop
        sop_uid, series_uid = derived_uids(src_sop, src_series)
        sop_class = str(src.get("SOPClassUID", "") or _SC_SOP_CLASS)
        if "SOPInstanceUID" in src:
            ref = Dataset()
            ref.ReferencedSOPClassUID = sop_class
            ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
            ds.SourceImageSequence = Sequence([ref])
        old_type = list(src.get("ImageType", []) or [])
        if isinstance(src.get("ImageType"), str):
            old_type = [src.ImageType]
    else:
        digest = hashlib.sha256(q.tobytes()).hexdigest()
        sop_uid, series_uid = derived_uids(digest, digest)
        sop_class = _SC_SOP_CLASS
        ds.StudyInstanceUID = _uid("xvert_gpu", "study", digest)
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
        ds.PatientName = ""
        ds.PatientID = ""
        old_type = []
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ["DERIVED", "SECONDARY"] + [str(v) for v in old_type[2:]]
    ds.DerivationDescription = _derivation_text(method, params)
    desc = str(ds.get("SeriesDescription", "") or "")
    ds.SeriesDescription = ((desc + " " if desc else "") + "xvert_gpu enhanced")[-64:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(q.shape[0]), int(q.shape[1])
    alloc = 8 if bits <= 8 else 16
    ds.BitsAllocated = alloc
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    data = q.astype(np.uint8 if alloc == 8 else "<u2").tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if alloc == 8 else "OW"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    if int(pydicom.__version__.split(".")[0]) < 3:
        ds.is_little_endian = True
        ds.is_implicit_VR = False
    return ds


def write_image(path, pixels, like: Radiograph | None = None, *, format: str | None = None,
                bits: int | None = None, method: str | None = None,
                parameters: Mapping | str | None = None) -> Path:
    """Write ``pixels`` to ``path`` atomically (temporary file in the same folder, then rename).

    ``pixels``: 2-D float array on [0, 1] (clipped), or integers at ``like.bits`` (or at
    ``bits``, or at the dtype's 8/16 bits without either). The format is ``format``, else the
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
    a = np.asarray(pixels)
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
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".tmp")
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


def _pydicom3() -> bool:
    import pydicom

    return int(pydicom.__version__.split(".")[0]) >= 3
