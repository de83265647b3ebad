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
tiff       8 and 16 bit unsigned, float32 on [0, 1] (tifffile); packed 10/12/14-bit
           samples at their own depth (decoding them needs imagecodecs). ``MaxSampleValue``
           (tag 281) of ``2**b - 1`` marks b-bit data in 16-bit samples (written so for
           12 bits). MINISWHITE is inverted so that bone is bright; a palette page goes
           through its colour map (grey entries only). LZW, JPEG and other
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
           inverted; BitsStored gives the range (values stored in the high bits of
           each word, HighBit above BitsStored - 1, are shifted down).
jsrt       JSRT raw ``.IMG``: 2048x2048, 12 bits in big-endian 16-bit words, no header.
           JSRT stores film density (bone dark), so it is inverted on read
           (``4095 - raw``) and back again on write.
=========  =========================================================================

An EXIF (JPEG, PNG) or TIFF ``Orientation`` is applied: pixels come in the order viewers show
them, so outputs written from them need no tag.

RGB/RGBA (or grey+alpha) images whose colour channels are equal are grey (for JPEG a
difference of up to ``JPEG_GREY_TOLERANCE`` is allowed); real colour is an error.

Every read failure raises :class:`ImageReadError` (a ValueError) naming the file and the reason.
Images with more than :data:`MAX_PIXELS` pixels are refused from the header, before any
decoding; images with a side shorter than 2 are refused.

Not supported (refused with a clear reason): 16-bit colour or grey+alpha PNGs (Pillow reduces
them to 8 bits), 12-bit JPEG, multi-page or multi-frame TIFF, CMYK, CIELab and uncompressed
YCbCr TIFF, multi-frame DICOM, DICOM with more
than 16 bits stored or float pixel data, palette-colour DICOM. VOI LUT (windowing) and Modality
LUT Sequences are not applied and are dropped from derived DICOM output.

Modules
-------
Every public name below is importable from ``xvert_gpu.io`` itself.

==============  ============================================================================
errors          :class:`ImageReadError`, :class:`ImageWriteError`.
radiograph      :class:`Radiograph`; :data:`FORMATS`, :data:`EXTENSIONS`,
                :data:`DEFAULT_EXTENSION`, :data:`MAX_PIXELS`, :data:`JPEG_GREY_TOLERANCE`;
                the size check and grey conversion every reader shares.
read            :func:`read_image` (signature sniffing, then the format's reader),
                :func:`stored_format` (that format, without decoding), :func:`image_files`,
                :func:`file_sha256`.
pillow          PNG and JPEG reading (Pillow), PNG chunk parsing (``sBIT``).
tiff            TIFF reading (tifffile, Pillow where a codec is missing) and its codec
                checks; tifffile's logger silenced during a read.
dicom           DICOM reading (pydicom): raw data sets, decoding, missing-decoder messages.
jsrt            JSRT raw reading; :data:`JSRT_SHAPE`, :data:`JSRT_BITS`.
write           :func:`write_image` (bit depth, quantisation, PNG/JPEG/TIFF/JSRT encoders),
                :func:`write_atomic`.
dicom_derived   The derived DICOM data set written by :func:`write_image`; :func:`derived_uids`.
==============  ============================================================================

Private helpers live in the module that defines them and are looked up there (patch
``xvert_gpu.io.tiff._tiff_missing_codec``, not ``xvert_gpu.io._tiff_missing_codec``).
"""

from __future__ import annotations

from .dicom_derived import derived_uids
from .errors import ImageReadError, ImageWriteError
from .jsrt import JSRT_BITS, JSRT_SHAPE
from .radiograph import (DEFAULT_EXTENSION, EXTENSIONS, FORMATS, JPEG_GREY_TOLERANCE, MAX_PIXELS,
                         Radiograph)
from .read import file_sha256, image_files, read_image, stored_format
from .write import write_atomic, write_image

__all__ = ["Radiograph", "ImageReadError", "ImageWriteError", "read_image", "write_image",
           "image_files", "MAX_PIXELS", "FORMATS", "EXTENSIONS",
           # public before the split too, now also listed here
           "file_sha256", "write_atomic", "derived_uids", "DEFAULT_EXTENSION",
           "JPEG_GREY_TOLERANCE", "JSRT_SHAPE", "JSRT_BITS", "stored_format"]
