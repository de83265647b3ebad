"""The :class:`Radiograph` type, the formats and size limit, and checks every reader shares.

:data:`FORMATS`, :data:`EXTENSIONS` and :data:`DEFAULT_EXTENSION` name the formats and their file
name extensions. Readers refuse images over :data:`MAX_PIXELS` from the header
(:func:`_check_size`) and reduce grey RGB/RGBA/grey+alpha samples to one channel
(:func:`_to_grey`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ImageReadError


#: Largest image (width * height) read; larger headers are refused before decoding. 2**26 is
#: 8192 x 8192, well above any radiograph detector, and below Pillow's decompression-bomb limit.
MAX_PIXELS = 2 ** 26

#: Largest channel difference at which an RGB JPEG still counts as grey (JPEG is lossy).
JPEG_GREY_TOLERANCE = 2

FORMATS = ("png", "jpeg", "tiff", "dicom", "jsrt")

#: File name extensions (lower case) and the format each one means.
EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg",
    ".tif": "tiff", ".tiff": "tiff", ".dcm": "dicom", ".dicom": "dicom", ".img": "jsrt",
}

#: Extension used when writing each format to a new name.
DEFAULT_EXTENSION = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm",
                     "jsrt": ".IMG"}


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


def _check_size(path, rows: int, cols: int, what: str = "image") -> None:
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(path, f"{what} header claims {cols}x{rows} = {rows * cols} pixels, "
                                   f"more than the limit of {MAX_PIXELS} (xvert_gpu.io.MAX_PIXELS)")
    if rows < 2 or cols < 2:
        raise ImageReadError(path, f"{what} is {cols}x{rows}: too small (each side must be >= 2)")


def _orient(arr: np.ndarray, orientation) -> np.ndarray:
    """Pixels stored in EXIF/TIFF ``Orientation`` (tag 274) order -> the order they are shown in.

    Viewers rotate or mirror such an image for display; a reader that ignored the tag would
    hand the network (and write out) a radiograph turned on its side. 1 (or no tag) is upright;
    2-8 are Pillow's ``ImageOps.exif_transpose`` operations.
    """
    if orientation is None:
        return arr
    try:
        o = int(orientation[0] if isinstance(orientation, (tuple, list)) else orientation)
    except (TypeError, ValueError):
        return arr
    if o == 2:
        arr = arr[:, ::-1]
    elif o == 3:
        arr = arr[::-1, ::-1]
    elif o == 4:
        arr = arr[::-1]
    elif o == 5:
        arr = arr.swapaxes(0, 1)
    elif o == 6:
        arr = np.rot90(arr, -1)
    elif o == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif o == 8:
        arr = np.rot90(arr, 1)
    return np.ascontiguousarray(arr)


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
