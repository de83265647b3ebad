"""DICOM reading through pydicom: raw data sets, pixel decoding, rescale and photometric handling,
and errors that name the package a missing decoder comes from.
"""

from __future__ import annotations

import numpy as np

from .errors import ImageReadError
from .radiograph import JPEG_GREY_TOLERANCE, Radiograph, _check_size, _to_grey


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


def _pixels(ds, whole_words: int | None = None):
    """``ds.pixel_array``; with ``whole_words``, the whole unsigned words of that many bits
    (the data set's BitsStored, HighBit and PixelRepresentation are put back afterwards)."""
    if whole_words is None:
        return ds.pixel_array
    keep = {k: ds[k].value for k in ("BitsStored", "HighBit", "PixelRepresentation") if k in ds}
    try:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = whole_words, whole_words - 1, 0
        return ds.pixel_array.copy()
    finally:
        for k in ("BitsStored", "HighBit", "PixelRepresentation"):
            if k in keep:
                setattr(ds, k, keep[k])
            elif k in ds:
                delattr(ds, k)


def _no_pixel_data(path, ds) -> ImageReadError:
    """The error for a data set without Pixel Data: truncated, or not an image at all.

    pydicom stops quietly where a file ends, so a file cut short before (or inside) its Pixel
    Data reads as a data set without one. An image's attributes (Rows, an image SOP class) or
    nothing at all after the file meta say that is what happened; a report or a presentation
    state (no image SOP class) has no pixels by design.
    """
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    name = str(getattr(uid, "name", "") or uid or "")
    if len(ds) == 0 or "Rows" in ds or "Image Storage" in name:
        what = f" ({name})" if name else ""
        return ImageReadError(path, f"DICOM without pixel data, though it is an image{what}: "
                                    "truncated or corrupt (the data ends before its Pixel Data)")
    return ImageReadError(path, f"DICOM without pixel data{f' ({name})' if name else ''}: "
                                "not an image")


def _read_dicom(path, preamble: bool = True) -> Radiograph:
    """Read a DICOM file; ``preamble`` is False for a raw data set (no 'DICM' prefix)."""
    pydicom = _import_pydicom(path)
    ds = _dcmread(pydicom, path, preamble)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise ImageReadError(path, "DICOM float pixel data is not supported")
        raise _no_pixel_data(path, ds)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits_stored = int(ds.BitsStored)
        bits_alloc = int(ds.BitsAllocated)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        high_bit = ds.get("HighBit", None)
        high_bit = bits_stored - 1 if high_bit is None or high_bit == "" else int(high_bit)
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
    # HighBit above BitsStored - 1 (older data): the value sits in the high bits of each word;
    # pydicom keeps the low BitsStored bits, which would be noise
    shift = high_bit + 1 - bits_stored
    if shift < 0 or high_bit >= bits_alloc:
        raise ImageReadError(path, f"invalid DICOM HighBit {high_bit} for BitsStored "
                                   f"{bits_stored}, BitsAllocated {bits_alloc}")
    if shift and _dicom_compressed(tsyntax):
        raise ImageReadError(path, f"compressed DICOM with HighBit {high_bit} above BitsStored "
                                   f"{bits_stored} - 1 is not supported")
    try:
        arr = _pixels(ds, bits_alloc if shift else None)
    except Exception as e:  # noqa: BLE001 - pydicom and its plugins raise many types
        raise _dicom_decode_error(path, tsyntax, e) from None
    arr = np.asarray(arr)
    if shift:
        arr = arr >> shift
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
    slope = _ds_number(raw_slope, 1.0)
    # its sign says which way the modality values run; NaN compares false with 0 both ways,
    # so the image would have been taken as upright without any reason to
    if not np.isfinite(slope) or slope == 0:
        raise ImageReadError(path, f"DICOM RescaleSlope {raw_slope!r} is not a finite non-zero "
                                   "number: which way the pixel values run is unknown")
    inverted = False
    if slope < 0:  # modality values fall as stored values rise
        wide = mask - wide
    if photometric == "MONOCHROME1":
        wide = mask - wide
        inverted = True
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    info = {"photometric": photometric,
            "rescale_slope": slope,
            # it only shifts modality values: the pixels do not depend on it, so a malformed
            # one (NaN here) is no reason to refuse them
            "rescale_intercept": _ds_number(ds.get("RescaleIntercept", None), 0.0),
            "signed": signed,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
    return Radiograph(wide.astype(dtype), bits_stored, "dicom", str(path), dataset=ds,
                      inverted=inverted, info=info)


def _ds_number(value, default: float) -> float:
    """A numeric attribute as a float: ``default`` where absent or empty, NaN where it is not
    one number (text, several values)."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
