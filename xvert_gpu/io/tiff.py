"""TIFF reading through tifffile, and through Pillow where tifffile lacks the page's codec.

One full-size page per file (reduced-resolution pages are ignored, frame stacks refused);
``MaxSampleValue`` gives the bit depth of 16-bit samples; MINISWHITE is inverted; a palette
page is mapped through its colour map; CMYK, Lab and other non-grey, non-RGB pages are refused.
:func:`_quiet_tifffile` silences tifffile's logger while :func:`~.read.read_image` reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

import numpy as np

from .errors import ImageReadError
from .radiograph import Radiograph, _check_size, _orient, _to_grey


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
            bps = int(page.bitspersample)
            # samples packed across byte boundaries (10-, 12-, 14-bit) need imagecodecs too
            missing = (_tiff_codec_name(page, "compression") if bps % 8 == 0 or
                       int(page.compression) != 1 else f"{bps}-bit packed samples")
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


#: Photometric interpretations read: MINISWHITE, MINISBLACK, RGB, PALETTE (and YCbCr in JPEG
#: compression, which the decoders turn into RGB).
_GREY_OR_RGB = (0, 1, 2, 3)


def _check_photometric(path, page, photometric: int) -> None:
    """Refuse photometric interpretations whose samples are not grey levels or RGB.

    CMYK (SEPARATED) samples are ink, so taking equal C, M, Y as grey gave an inverted image;
    CIELab, uncompressed YCbCr, LogL and others are not RGB either.
    """
    if photometric in _GREY_OR_RGB:
        return
    if photometric == 6 and int(page.compression) in (6, 7):  # JPEG decoders give RGB
        return
    try:
        import tifffile

        name = tifffile.PHOTOMETRIC(photometric).name
    except (ImportError, ValueError):
        name = str(photometric)
    what = {"SEPARATED": "SEPARATED (CMYK)"}.get(name, name)
    raise ImageReadError(path, f"TIFF photometric interpretation {what} is not supported "
                               "(only grey: MINISBLACK, MINISWHITE, grey RGB or a grey palette)")


def _apply_palette(path, page, idx: np.ndarray) -> tuple[np.ndarray, int]:
    """A palette page's indices -> grey levels through its colour map: (pixels, bits).

    The colour map holds 16-bit values; a map that only uses the high byte (``v * 256``, as
    Pillow writes) or repeats it (``v * 257``) gives 8-bit pixels, any other 16-bit ones.
    Colour entries (R, G, B not all equal) among those used are refused.
    """
    cmap = getattr(page, "colormap", None)
    if cmap is None:
        raise ImageReadError(path, "palette TIFF without a colour map")
    cmap = np.asarray(cmap)
    if idx.ndim != 2 or cmap.ndim != 2 or cmap.shape[0] != 3 or idx.dtype.kind != "u" \
            or int(idx.max()) >= cmap.shape[1]:
        raise ImageReadError(path, f"palette TIFF whose colour map {cmap.shape} does not fit its "
                                   f"indices {idx.dtype} {idx.shape}")
    used = cmap[:, np.unique(idx)].astype(np.int64)
    diff = int(max(np.abs(used[0] - used[1]).max(), np.abs(used[0] - used[2]).max()))
    if diff:
        raise ImageReadError(path, f"colour image: the palette's colour channels differ (by up "
                                   f"to {diff} of 65535); only grey radiographs are supported")
    lut = cmap[0].astype(np.uint16)
    lo, hi = used[0] & 0xFF, used[0] >> 8
    if np.all(lo == 0) or np.all(lo == hi):
        return (lut >> 8).astype(np.uint8)[idx], 8
    return lut[idx], 16


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
        stored = int(page.bitspersample)
        if dtype == np.bool_:
            raise ImageReadError(path, "1-bit (black and white) TIFF is not supported: a "
                                       "radiograph needs grey levels")
        if dtype is None or not (dtype in (np.uint8, np.uint16) or dtype.kind == "f"):
            raise ImageReadError(path, f"unsupported TIFF sample type {dtype} "
                                       "(8/16-bit unsigned or float)")
        maxsample = None
        tag = page.tags.get(281)  # MaxSampleValue
        if tag is not None:
            v = tag.value
            maxsample = int(v[0] if isinstance(v, (tuple, list)) else v)
        photometric = int(page.photometric) if page.photometric is not None else 1
        _check_photometric(path, page, photometric)
        arr = _tiff_to_grey(path, page, _decode_tiff_page(path, page))
        tag = page.tags.get(274)  # Orientation: tifffile returns the samples as stored
        arr = _orient(arr, tag.value if tag is not None else None)
        if photometric == 3:  # PALETTE: the samples are indices into the colour map
            arr, bits = _apply_palette(path, page, arr)
            return Radiograph(np.ascontiguousarray(arr), bits, "tiff", str(path))
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
    if 1 < stored < bits:  # packed 2/4/10/12/14-bit samples: their own depth
        bits = stored
    if bits == 16 and maxsample is not None and 0 < maxsample < 65535 \
            and (maxsample + 1) & maxsample == 0 and int(arr.max()) <= maxsample:
        bits = maxsample.bit_length()
    if photometric == 0:
        arr = (2 ** bits - 1 - arr.astype(np.int32)).astype(dtype)
        inverted = True
    return Radiograph(np.ascontiguousarray(arr), bits, "tiff", str(path), inverted=inverted)
