"""JSRT raw ``.IMG`` reading: 2048x2048, 12 bits in big-endian 16-bit words, no header.

JSRT stores film density (bone dark), so pixels are inverted on read (``4095 - raw``).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ImageReadError
from .radiograph import Radiograph


#: Shape (rows, columns) and bit depth of every JSRT raw image.
JSRT_SHAPE = (2048, 2048)
JSRT_BITS = 12


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
