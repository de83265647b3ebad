"""Derived DICOM output (SPEC section 8): the data set written for an enhanced image, with
deterministic UIDs and the source's attributes that still hold.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from typing import Any, Mapping

import numpy as np

from .errors import ImageWriteError
from .radiograph import Radiograph


_DEFAULT_METHOD = "XVertNet unsupervised spine contrast enhancement"


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
    from .. import __version__

    sop = _uid("xvert_gpu", __version__, "sop", str(source_sop_uid))
    series = _uid("xvert_gpu", __version__, "series", str(source_series_uid))
    return sop, series


def _derivation_text(method: str | None, params: Mapping | str | None) -> str:
    from .. import __version__

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


def _pydicom3() -> bool:
    import pydicom

    return int(pydicom.__version__.split(".")[0]) >= 3
