"""PNG and JPEG reading through Pillow, with the PNG chunks Pillow leaves alone (``sBIT``)."""

from __future__ import annotations

import os

import numpy as np

from .errors import ImageReadError
from .radiograph import JPEG_GREY_TOLERANCE, Radiograph, _check_size, _orient, _to_grey


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


def _check_complete(path, fmt: str) -> None:
    """Refuse a PNG or JPEG whose data stops early, whatever Pillow was told.

    Pillow pads a truncated image with black instead of failing when the host process has set
    its global ``ImageFile.LOAD_TRUNCATED_IMAGES`` (common in torch data loaders), and a batch
    would then enhance and record the padded image. So the end of the stream is checked here:
    a PNG must reach its IEND chunk, a JPEG must have an end-of-image marker after its last scan.
    """
    with open(path, "rb") as f:
        if fmt == "png":
            size = os.path.getsize(path)
            pos = 8
            while True:
                f.seek(pos)
                hdr = f.read(8)
                if len(hdr) < 8:
                    raise ImageReadError(path, "truncated PNG: the file ends before its IEND chunk")
                if hdr[4:8] == b"IEND":
                    return
                pos += 12 + int.from_bytes(hdr[:4], "big")
                if pos > size:
                    raise ImageReadError(path, f"truncated PNG: its {hdr[4:8].decode('latin-1')!r} "
                                               "chunk runs past the end of the file")
        data = f.read()
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):  # entropy data never holds FF D9
        raise ImageReadError(path, "truncated JPEG: no end-of-image marker after its last scan")


def _scaled_up(arr: np.ndarray, sbit: int) -> bool:
    """Whether 16-bit samples hold ``sbit``-bit values scaled up to 16 bits as PNG encoders do
    (left bit replication, zero-filled low bits, or linear scaling), so that ``>> (16 - sbit)``
    gives them back. The maximum alone cannot tell: the values of a dark image (12-bit values
    below 256) stay below ``2**sbit`` even when scaled up."""
    shift = 16 - sbit
    v = (arr >> shift).astype(np.uint32)
    replicated = np.zeros_like(v)
    for pos in range(shift, -sbit, -sbit):  # v's bits repeated down to bit 0
        replicated |= (v << pos) if pos >= 0 else (v >> -pos)
    linear = (v * 65535 + (2 ** sbit - 1) // 2) // (2 ** sbit - 1)
    low = arr & np.uint16(2 ** shift - 1)
    return bool(np.array_equal(arr, replicated) or not low.any() or np.array_equal(arr, linear))


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
        frames = getattr(im, "n_frames", 1)
        if frames != 1:  # an animated PNG (APNG): Pillow would give its first frame only
            raise ImageReadError(path, f"animated PNG with {frames} frames: one radiograph per "
                                       "file is supported")
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
        _check_complete(path, fmt)
        try:
            orientation = im.getexif().get(0x0112)  # EXIF Orientation (JPEG, PNG eXIf)
        except Exception:  # noqa: BLE001 - a corrupt EXIF block: show the pixels as stored
            orientation = None
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
    arr = _orient(_to_grey(path, arr, tol), orientation)
    if bits == 16:
        if arr.dtype != np.uint16:
            if arr.min() < 0 or arr.max() > 65535:
                raise ImageReadError(path, "16-bit PNG decoded out of range")
            arr = arr.astype(np.uint16)
        if sbit is not None:
            if int(arr.max()) >= 2 ** sbit or _scaled_up(arr, sbit):  # as the PNG standard says
                arr = arr >> np.uint16(16 - sbit)
            bits = sbit
            if bits <= 8:
                arr = arr.astype(np.uint8)
    else:
        arr = arr.astype(np.uint8, copy=False)
    return Radiograph(np.ascontiguousarray(arr), bits, fmt, str(path))
