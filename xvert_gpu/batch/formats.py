"""Which format and file name an enhanced image gets (``--format same|png|tiff|dcm``).

=================  ================================================================
``--format``       output
=================  ================================================================
``same`` (default) the input's format and file name, except that JPEG becomes PNG:
                   JPEG is lossy and 8-bit only, so re-encoding the enhanced image
                   as JPEG would add compression artefacts to the detail the method
                   brings out. JSRT raw (``.IMG``) stays JSRT raw, DICOM stays a
                   (derived) DICOM, float TIFF stays float TIFF.
``png``            PNG at the input's bit depth (8 or up to 16 bits; float input
                   gives 16 bits).
``tiff``           TIFF at the input's bit depth (8, 12 or 16 bits, or float32).
``dcm``            a derived DICOM (SPEC section 8). Only DICOM inputs can give
                   one: a DICOM needs the patient and study attributes of a source
                   to be attributable, and an image without them would be an orphan
                   in a PACS. Other inputs are reported as failed with that reason,
                   from their first bytes, before they are decoded.
=================  ================================================================

The bit depth is always the input's (a 12-bit DICOM gives a 12-bit PNG with ``sBIT = 12``,
an 8-bit PNG an 8-bit PNG). The output name is the input's name with its image extension
replaced by the output format's; a name whose suffix is not an image extension (a DICOM file
named by its UID, say) keeps its whole name and, unless the format is kept, gets the new
extension appended.
"""

from __future__ import annotations

from pathlib import PurePath

from ..io import DEFAULT_EXTENSION, EXTENSIONS

__all__ = ["CHOICES", "input_format", "output_format", "output_name"]

#: Values of ``--format``.
CHOICES = ("same", "png", "tiff", "dcm")

_CHOICE_FORMAT = {"png": "png", "tiff": "tiff", "dcm": "dicom"}

#: ``same`` maps these input formats to another output format.
_SAME_OVERRIDE = {"jpeg": "png"}


def input_format(name: str | PurePath, sniffed: str | None = None) -> str | None:
    """The format a file name stands for (by extension), or ``sniffed`` when it has none.

    Parameters
    ----------
    name : str or PurePath
        File name or path.
    sniffed : str, optional
        Format found from the file's contents (used for extension-less DICOM files).
    """
    fmt = EXTENSIONS.get(PurePath(name).suffix.lower())
    return fmt if fmt is not None else sniffed


def output_format(in_format: str, choice: str = "same") -> str:
    """The format (an :data:`xvert_gpu.io.FORMATS` name) written for an input format and choice."""
    if choice not in CHOICES:
        raise ValueError(f"--format must be one of {CHOICES}; got {choice!r}")
    if choice == "same":
        return _SAME_OVERRIDE.get(in_format, in_format)
    return _CHOICE_FORMAT[choice]


def output_name(name: str, in_format: str, out_format: str) -> str:
    """The output file name for input file ``name``.

    >>> output_name("a.PNG", "png", "png"), output_name("b.jpg", "jpeg", "png")
    ('a.PNG', 'b.png')
    >>> output_name("1.2.840.5", "dicom", "dicom"), output_name("1.2.840.5", "dicom", "png")
    ('1.2.840.5', '1.2.840.5.png')
    """
    p = PurePath(name)
    has_image_ext = p.suffix.lower() in EXTENSIONS
    if out_format == in_format and (has_image_ext or out_format == "dicom"):
        return p.name
    stem = p.stem if has_image_ext else p.name
    return stem + DEFAULT_EXTENSION[out_format]
