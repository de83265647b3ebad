"""Image I/O (issue 6, SPEC sections 1 and 8): round trips at true bit depth, DICOM in and out,
the real samples, and the bad-input corpus."""

import logging
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import xvert_gpu
from xvert_gpu import io as xio
from xvert_gpu.io import ImageReadError, ImageWriteError, Radiograph, read_image, write_image
from xvert_gpu.io import tiff as xio_tiff  # TIFF helpers are patched where they are looked up

DATA = Path(xvert_gpu.__file__).resolve().parent / "data"
XRAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "xray"


def _sample8(size=256):
    im = Image.open(DATA / "00000001_000.png").convert("L")
    if size:
        im = im.resize((size, size - 16), Image.BILINEAR)  # not square: catches transposes
    return np.asarray(im)


def _scaled(bits, size=256):
    a = _sample8(size).astype(np.float64)
    return np.rint(a * ((2 ** bits - 1) / 255.0)).astype(np.uint16)


def _shared(name):
    p = XRAY / name
    if not p.exists():
        pytest.skip(f"sample {p} not available")
    return p


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------

def test_png8_bundled_sample():
    r = read_image(DATA / "00000001_000.png")
    assert (r.bits, r.format, r.pixels.dtype, r.pixels.shape) == (8, "png", np.uint8, (512, 512))
    f = r.as_float()
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, r.pixels.astype(np.float32) / 255)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_8bit_round_trip(tmp_path, fmt):
    a = _sample8()
    src = tmp_path / f"a.{fmt}"
    write_image(src, a)
    r = read_image(src)
    assert (r.bits, r.format, r.pixels.dtype) == (8, fmt, np.uint8)
    np.testing.assert_array_equal(r.pixels, a)
    out = write_image(tmp_path / f"b.{fmt}", r.as_float(), like=r)
    np.testing.assert_array_equal(read_image(out).pixels, a)


def test_png16_is_16bit_even_when_max_is_small(tmp_path):
    a = _scaled(12)  # max 4095, plain 16-bit PNG without sBIT
    p = tmp_path / "a16.png"
    Image.frombytes("I;16", a.shape[::-1], a.astype("<u2").tobytes()).save(p)
    r = read_image(p)
    assert (r.bits, r.pixels.dtype) == (16, np.uint16)
    np.testing.assert_array_equal(r.pixels, a)
    assert r.as_float().max() == pytest.approx(a.max() / 65535)
    out = write_image(tmp_path / "o.png", r.pixels, like=r)
    assert Image.open(out).mode == "I;16"
    r2 = read_image(out)
    assert r2.bits == 16
    np.testing.assert_array_equal(r2.pixels, a)


def test_png_full_16bit_round_trip(tmp_path):
    a = _scaled(16)
    r = read_image(write_image(tmp_path / "a.png", a, bits=16))
    assert r.bits == 16 and r.pixels.max() == a.max()
    np.testing.assert_array_equal(r.pixels, a)


def test_png_12bit_uses_sbit_and_round_trips(tmp_path):
    a = _scaled(12)
    p = write_image(tmp_path / "a12.png", a, bits=12)
    raw = np.asarray(Image.open(p))  # stored scaled up to 16 bits, as PNG asks
    assert raw.max() > 4095
    r = read_image(p)
    assert (r.bits, r.pixels.dtype) == (12, np.uint16)
    np.testing.assert_array_equal(r.pixels, a)
    np.testing.assert_allclose(r.as_float(), a / 4095, atol=1e-6)


@pytest.mark.parametrize("bits", [10, 12, 14, 15])
def test_png_sbit_round_trips_dark_images(tmp_path, bits):
    """Values below 2**(2 * bits - 16) stay below 2**bits when scaled up to 16 bits: such a
    dark (or constant) image was taken for unscaled data and read back 2**(16 - bits) times
    too bright."""
    a = np.full((8, 10), 100, np.uint16)
    a[2:5, 3:7] = 37
    for b in (a, a * 0 + 1, a * 0):
        p = write_image(tmp_path / "dark.png", b, bits=bits)
        r = read_image(p)
        assert r.bits == bits
        np.testing.assert_array_equal(r.pixels, b)


def test_png_sbit_samples_not_scaled_up_are_kept(tmp_path):
    """A writer that stores 12-bit values unscaled with sBIT = 12: read as they are."""
    from PIL import PngImagePlugin

    a = _scaled(12, 64)
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([12]))
    Image.frombytes("I;16", a.shape[::-1], a.astype("<u2").tobytes()).save(
        tmp_path / "u.png", pnginfo=info)
    r = read_image(tmp_path / "u.png")
    assert r.bits == 12
    np.testing.assert_array_equal(r.pixels, a)


@pytest.mark.parametrize("bits", [12, 16])
def test_tiff_16bit_round_trip(tmp_path, bits):
    a = _scaled(bits)
    r = read_image(write_image(tmp_path / "a.tif", a, bits=bits))
    assert (r.bits, r.format, r.pixels.dtype) == (bits, "tiff", np.uint16)
    np.testing.assert_array_equal(r.pixels, a)
    out = read_image(write_image(tmp_path / "b.tiff", r.as_float(), like=r))
    assert out.bits == bits
    np.testing.assert_array_equal(out.pixels, a)


def test_tiff_16bit_without_metadata_is_16bit(tmp_path):
    import tifffile

    a = _scaled(12)
    tifffile.imwrite(tmp_path / "a.tif", a)
    assert read_image(tmp_path / "a.tif").bits == 16


def test_tiff_float_round_trip(tmp_path):
    a = (_sample8() / 255.0).astype(np.float32)
    r = read_image(write_image(tmp_path / "f.tif", a))
    assert (r.bits, r.pixels.dtype) == (32, np.float32)
    np.testing.assert_array_equal(r.as_float(), a)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "g.tif", a, like=r)).pixels, a)


def test_jsrt_round_trip(tmp_path):
    a = np.zeros(xio.JSRT_SHAPE, np.uint16)
    a[:240, :256] = _scaled(12)
    a[1000:1010, 5:7] = 4095
    p = tmp_path / "JPCLN001.IMG"
    (np.uint16(4095) - a).astype(">u2").tofile(p)  # JSRT stores density: bone dark
    r = read_image(p)
    assert (r.bits, r.format, r.pixels.shape) == (12, "jsrt", (2048, 2048))
    np.testing.assert_array_equal(r.pixels, a)
    out = write_image(tmp_path / "out.IMG", r.as_float(), like=r)
    assert out.read_bytes() == p.read_bytes()


def test_write_converts_bit_depth_between_formats(tmp_path):
    a = _scaled(12)
    r = Radiograph(a, 12, "jsrt")
    png8 = read_image(write_image(tmp_path / "x.png", a, like=r, bits=8))
    assert png8.bits == 8
    np.testing.assert_allclose(png8.as_float(), a / 4095, atol=0.5 / 255 + 1e-6)
    png = read_image(write_image(tmp_path / "y.png", a, like=r))  # keeps 12 bits
    assert png.bits == 12
    np.testing.assert_array_equal(png.pixels, a)


def test_write_is_atomic_and_never_overwrites_source(tmp_path):
    a = _sample8()
    src = write_image(tmp_path / "s.png", a)
    before = src.read_bytes()
    r = read_image(src)
    with pytest.raises(ValueError, match="source"):
        write_image(src, 255 - a, like=r)
    assert src.read_bytes() == before
    write_image(tmp_path / "o.png", a, like=r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "s.png"]  # no temp files left


# ---------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------

def _make_dicom(path, pixels, bits_stored=12, photometric="MONOCHROME2", signed=False,
                slope=None, intercept=None):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.SeriesInstanceUID = "1.2.3.4.5.6"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P001"
    ds.StudyDate = "20240102"
    ds.AccessionNumber = "A42"
    ds.Modality = "CR"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def test_dicom_12bit_read_and_derived_write(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    a = _scaled(12)
    src = _make_dicom(tmp_path / "src.dcm", a)
    before = src.read_bytes()
    r = read_image(src)
    assert (r.bits, r.format, r.pixels.dtype) == (12, "dicom", np.uint16)
    assert r.dataset is not None
    np.testing.assert_array_equal(r.pixels, a)

    params = {"lam": 1.0, "alpha": 1.2, "T": 2}
    out1 = write_image(tmp_path / "o1.dcm", r.as_float(), like=r, parameters=params)
    out2 = write_image(tmp_path / "o2.dcm", r.as_float(), like=r, parameters=params)
    assert src.read_bytes() == before
    d1, d2 = pydicom.dcmread(out1), pydicom.dcmread(out2)
    assert d1.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert d1.SOPInstanceUID != r.dataset.SOPInstanceUID
    assert d1.SeriesInstanceUID != r.dataset.SeriesInstanceUID
    assert (d1.SOPInstanceUID, d1.SeriesInstanceUID) == (d2.SOPInstanceUID, d2.SeriesInstanceUID)
    assert d1.file_meta.MediaStorageSOPInstanceUID == d1.SOPInstanceUID
    assert out1.read_bytes() == out2.read_bytes()  # fully deterministic
    assert list(d1.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "lam=1.0" in d1.DerivationDescription and xvert_gpu.__version__ in d1.DerivationDescription
    assert (d1.BitsStored, d1.BitsAllocated, d1.HighBit) == (12, 16, 11)
    assert d1.PhotometricInterpretation == "MONOCHROME2"
    assert str(d1.PatientName) == "Doe^Jane" and d1.PatientID == "P001"
    assert d1.StudyInstanceUID == "1.2.3.4.5" and d1.AccessionNumber == "A42"
    assert "WindowCenter" not in d1
    assert d1.SourceImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4.5.6.7"
    np.testing.assert_array_equal(d1.pixel_array, a)
    back = read_image(out1)
    assert back.bits == 12
    np.testing.assert_array_equal(back.pixels, a)


def test_dicom_monochrome1_signed_and_rescale(tmp_path):
    pytest.importorskip("pydicom")
    a = _scaled(12)
    m1 = read_image(_make_dicom(tmp_path / "m1.dcm", a, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(m1.pixels, 4095 - a)
    assert m1.inverted
    # signed storage and a rescale with positive slope: same image on [0, 1]
    s = read_image(_make_dicom(tmp_path / "s.dcm", a.astype(np.int32) - 2048, signed=True,
                               slope=2.0, intercept=-100))
    np.testing.assert_array_equal(s.pixels, a)
    # a negative slope reverses the direction
    n = read_image(_make_dicom(tmp_path / "n.dcm", a, slope=-1.0, intercept=4095))
    np.testing.assert_array_equal(n.pixels, 4095 - a)


@pytest.mark.parametrize("slope", ["NaN", "inf", "0", [1.0, 2.0]])
def test_dicom_rescale_slope_without_a_direction_is_refused(tmp_path, slope):
    """A NaN slope passed both sign tests and the image was read as if upright; a
    multi-valued one failed with a bare TypeError."""
    pytest.importorskip("pydicom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid DS it writes
        path = _make_dicom(tmp_path / "s.dcm", _scaled(12, 32), slope=slope)
        with pytest.raises(ImageReadError, match="RescaleSlope .* not a finite non-zero") as e:
            read_image(path)
    assert e.value.path == str(path)


@pytest.mark.parametrize("intercept", ["abcd", [1.0, 2.0]])
def test_dicom_malformed_rescale_intercept_does_not_refuse_the_pixels(tmp_path, intercept):
    """The intercept only shifts modality values (the pixels do not depend on it): a malformed
    one used to fail the whole read with a bare ValueError / TypeError."""
    pytest.importorskip("pydicom")
    a = _scaled(12, 32)
    import pydicom
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values it writes
        path = _make_dicom(tmp_path / "i.dcm", a, slope=1.0,
                           intercept=intercept if isinstance(intercept, list) else None)
        if isinstance(intercept, str):  # not a DS at all: stored as text
            ds = pydicom.dcmread(path)
            del ds[0x00281052]
            ds.add_new(0x00281052, "LO", intercept)
            ds.save_as(path)
        r = read_image(path)
    np.testing.assert_array_equal(r.pixels, a)
    assert np.isnan(r.info["rescale_intercept"])


def test_dicom_bits_stored_masks_high_bits(tmp_path):
    pytest.importorskip("pydicom")
    a = _scaled(10)
    r = read_image(_make_dicom(tmp_path / "x.dcm", a | np.uint16(0xF000), bits_stored=10))
    assert r.bits == 10
    np.testing.assert_array_equal(r.pixels, a)
    assert r.as_float().max() <= 1.0


def test_dicom_high_bit_above_bits_stored(tmp_path):
    """HighBit 15 with BitsStored 12 (older data: the value in the top bits of each word) was
    read as the low 12 bits of the word, i.e. noise; now the words are shifted down."""
    pydicom = pytest.importorskip("pydicom")
    a = _scaled(12, 64)
    signed = a.astype(np.int16) - 2048  # 12-bit two's complement values
    for name, words, is_signed, want in [
            ("u.dcm", a.astype(np.uint16) << 4, False, a),
            ("s.dcm", (signed.astype(np.uint16) & 0xFFF) << 4, True, a)]:
        path = _make_dicom(tmp_path / name, words.view(np.int16) if is_signed else words,
                           bits_stored=12, signed=is_signed)
        ds = pydicom.dcmread(path)
        ds.HighBit = 15
        ds.save_as(path)
        rad = read_image(path)
        assert rad.bits == 12
        np.testing.assert_array_equal(rad.pixels, want, err_msg=name)
        assert (rad.dataset.BitsStored, rad.dataset.HighBit) == (12, 15)  # put back
    ds.HighBit = 16  # beyond BitsAllocated
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(ImageReadError, match="invalid DICOM HighBit 16"):
        read_image(tmp_path / "bad.dcm")


def test_dicom_written_from_non_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    a = _scaled(12)
    r = Radiograph(a, 12, "png")
    p = write_image(tmp_path / "x.dcm", a, like=r)
    d = pydicom.dcmread(p)
    assert d.BitsStored == 12 and list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    np.testing.assert_array_equal(read_image(p).pixels, a)


def test_siim_monochrome1_is_255_minus_monochrome2():
    pytest.importorskip("pydicom")
    pytest.importorskip("pylibjpeg")
    pytest.importorskip("libjpeg")
    m2 = read_image(_shared("siim_cr_jpeg_baseline.dcm"))
    m1 = read_image(_shared("siim_cr_monochrome1.dcm"))
    assert (m2.bits, m1.bits) == (8, 8)
    assert m2.pixels.shape == (1024, 1024) and m2.pixels.dtype == np.uint8
    np.testing.assert_array_equal(m1.pixels, 255 - m2.pixels)


def test_siim_derived_write(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("pylibjpeg")
    pytest.importorskip("libjpeg")
    src = _shared("siim_cr_monochrome1.dcm")
    r = read_image(src)
    d = pydicom.dcmread(write_image(tmp_path / "o.dcm", r.pixels, like=r))
    assert d.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert d.PhotometricInterpretation == "MONOCHROME2" and d.BitsStored == 8
    assert d.SOPInstanceUID != r.dataset.SOPInstanceUID
    assert d.PatientName == r.dataset.PatientName
    np.testing.assert_array_equal(d.pixel_array, r.pixels)


# ---------------------------------------------------------------------------------------------
# grey RGB samples
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [("h0001.png", "png"), ("16747_3_1.jpg", "jpeg")])
def test_rgb_equal_channels_read_as_grey(name, fmt):
    p = _shared(name)
    r = read_image(p)
    assert (r.format, r.bits, r.pixels.ndim, r.pixels.dtype) == (fmt, 8, 2, np.uint8)
    np.testing.assert_array_equal(r.pixels, np.asarray(Image.open(p))[..., 0])


def test_rgba_equal_channels_is_grey(tmp_path):
    a = _sample8(64)
    rgba = np.dstack([a, a, a, np.full_like(a, 255)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").pixels, a)


# ---------------------------------------------------------------------------------------------
# the bad-input corpus: every failure is an ImageReadError naming the file and the reason
# ---------------------------------------------------------------------------------------------

def _png_header_only(path, w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _bad_files(tmp_path):
    """(name, path, reason regex) for each kind of bad input."""
    rng = np.random.default_rng(0)
    a = _sample8(64)
    good_png = tmp_path / "good.png"
    Image.fromarray(a).save(good_png)
    good_jpg = tmp_path / "good.jpg"
    Image.fromarray(a).save(good_jpg, quality=90)
    good_tif = tmp_path / "good.tif"
    import tifffile
    tifffile.imwrite(good_tif, _scaled(16, 64))
    cases = []

    def add(name, data, reason):
        p = tmp_path / name
        p.write_bytes(data)
        cases.append((name, p, reason))

    cases.append(("missing.png", tmp_path / "missing.png", "not found"))
    add("empty.png", b"", "empty")
    add("trunc.png", good_png.read_bytes()[: good_png.stat().st_size // 2], "truncated|corrupt")
    add("trunc.jpg", good_jpg.read_bytes()[: good_jpg.stat().st_size // 2], "truncated|corrupt")
    add("trunc.tif", good_tif.read_bytes()[: good_tif.stat().st_size // 2], "truncated|corrupt")
    add("corrupt.png", good_png.read_bytes()[:60] + bytes(200) + good_png.read_bytes()[260:],
        "corrupt|truncated")
    noise = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    for ext in ("png", "jpg", "tif", "dcm", "IMG"):
        add(f"random.{ext}", noise, "signature|not a DICOM|JSRT|corrupt")
    add("image.xyz", good_png.read_bytes()[8:], "unknown")
    Image.fromarray(np.dstack([a, a // 2, a]), "RGB").save(tmp_path / "colour.png")
    cases.append(("colour.png", tmp_path / "colour.png", "colour"))
    Image.fromarray(np.full((1, 1), 7, np.uint8)).save(tmp_path / "one.png")
    cases.append(("one.png", tmp_path / "one.png", "too small"))
    Image.fromarray(np.full((1, 50), 7, np.uint8)).save(tmp_path / "line.png")
    cases.append(("line.png", tmp_path / "line.png", "too small"))
    cases.append(("huge.png", _png_header_only(tmp_path / "huge.png", 100000, 100000),
                  "limit|bomb"))
    cases.append(("big.png", _png_header_only(tmp_path / "big.png", 9000, 9000), "limit|bomb"))
    for name, arr, reason in [("nan.tif", np.array([[0.5, np.nan], [0.1, 0.2]], np.float32), "NaN"),
                              ("inf.tif", np.array([[0.5, np.inf], [0.1, 0.2]], np.float32), "Inf"),
                              ("neg.tif", np.array([[-0.5, 0.1], [0.1, 0.2]], np.float32), r"\[0, 1\]"),
                              ("over.tif", np.array([[1.5, 0.1], [0.1, 0.2]], np.float32), r"\[0, 1\]")]:
        tifffile.imwrite(tmp_path / name, arr)
        cases.append((name, tmp_path / name, reason))
    add("short.IMG", bytes(2048 * 2048), "truncated JSRT")
    return cases


def test_bad_input_corpus(tmp_path):
    cases = _bad_files(tmp_path)
    snapshot = {p: p.read_bytes() for _, p, _ in cases if p.exists()}
    for name, path, reason in cases:
        with pytest.raises(ImageReadError) as ei:
            read_image(path)
        err = ei.value
        assert isinstance(err, ValueError)
        assert str(path) in str(err), name
        assert err.path == str(path)
        assert re.search(reason, err.reason), (name, err.reason)
    for p, data in snapshot.items():  # inputs never modified
        assert p.read_bytes() == data


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_not_a_regular_file(tmp_path):
    """A FIFO named like an image was called an empty file; hashing it blocked for ever."""
    import os

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    with pytest.raises(ImageReadError, match=r"not a regular file \(a named pipe \(FIFO\)\)"):
        read_image(pipe)
    with pytest.raises(ImageReadError, match="not a regular file") as ei:
        xio.file_sha256(pipe)  # O_NONBLOCK: refused without waiting for a writer
    assert ei.value.path == str(pipe)


def test_bad_dicom_corpus(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    a = _scaled(12, 64)
    good = _make_dicom(tmp_path / "good.dcm", a)
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(good)
    ds.Rows, ds.Columns = 60000, 60000
    ds.save_as(tmp_path / "huge.dcm")
    data = good.read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) - 3000])
    rgb = pydicom.dcmread(good)
    col = np.dstack([a, a // 2, a]).astype("<u2")
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    rgb.PixelData = col.tobytes()
    rgb.save_as(tmp_path / "colour.dcm")
    for name, reason in [("nopix.dcm", "without pixel data"), ("huge.dcm", "limit"),
                         ("trunc.dcm", "truncated|corrupt"), ("colour.dcm", "colour")]:
        with pytest.raises(ImageReadError, match=reason) as ei:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(ei.value)


def test_dicom_cut_short_before_its_pixel_data_is_called_truncated(tmp_path):
    """pydicom reads a file cut before (or inside encapsulated) Pixel Data as a data set
    without one: that was reported as "DICOM without pixel data", as if it were no image."""
    pydicom = pytest.importorskip("pydicom")
    good = _make_dicom(tmp_path / "good.dcm", _scaled(12, 64))
    data = good.read_bytes()
    start = data.index(b"\xe0\x7f\x10\x00")  # the Pixel Data element
    for n in (140, 400, start - 20, start + 4):
        (tmp_path / "cut.dcm").write_bytes(data[:n])
        with pytest.raises(ImageReadError, match="truncated") as ei:
            read_image(tmp_path / "cut.dcm")
        assert ei.value.path == str(tmp_path / "cut.dcm")
    ds = pydicom.dcmread(good)  # a report has no pixels by design: said so
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.save_as(tmp_path / "report.dcm")
    with pytest.raises(ImageReadError, match=r"without pixel data \(Basic Text SR.*not an image"):
        read_image(tmp_path / "report.dcm")


def test_dicom_without_pydicom_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    p = tmp_path / "x.dcm"
    p.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 100)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError("no pydicom")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImageReadError, match="pip install"):
        read_image(p)


def test_error_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(ImageReadError("/x/y.png", "empty file (0 bytes)")))
    assert (e.path, e.reason, str(e)) == ("/x/y.png", "empty file (0 bytes)",
                                          "/x/y.png: empty file (0 bytes)")


# ---------------------------------------------------------------------------------------------
# reviewer's findings: DICOM without preamble, TIFF codecs and pages, decoder advice, writing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strip", ["preamble", "file_meta"])
def test_dicom_without_preamble_is_read_by_extension(tmp_path, strip):
    pytest.importorskip("pydicom")
    a = _scaled(12, 64)
    data = _make_dicom(tmp_path / "good.dcm", a).read_bytes()
    assert data[128:132] == b"DICM"
    body = data[132:]  # file meta group, then the data set
    if strip == "file_meta":  # a bare data set, as older systems wrote: no Transfer Syntax UID
        group_len = struct.unpack("<I", body[8:12])[0]  # (0002,0000) UL
        body = body[12 + group_len:]
    p = tmp_path / "raw.dcm"
    p.write_bytes(body)
    r = read_image(p)
    assert (r.bits, r.format, r.pixels.dtype) == (12, "dicom", np.uint16)
    np.testing.assert_array_equal(r.pixels, a)
    assert p.read_bytes() == body


def test_dicom_named_file_without_image_is_a_clear_error(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    good = _make_dicom(tmp_path / "good.dcm", _scaled(12, 64))
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix_full.dcm")
    noise = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for name, data in [("noise.dcm", noise), ("text.dicom", b"hello world\n" * 10),
                       ("nopix.dcm", (tmp_path / "nopix_full.dcm").read_bytes()[132:])]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ImageReadError, match="not a DICOM file") as ei:
            read_image(p)
        assert str(p) in str(ei.value) and "force=True" not in ei.value.reason
        assert p.read_bytes() == data


def _patch_tiff_tag(path, code, value):
    """Overwrite the inline SHORT value of tag ``code`` of the first page (to make test files)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        offset, order = tif.pages[0].tags[code].valueoffset, tif.byteorder
    data = bytearray(path.read_bytes())
    data[offset:offset + 2] = struct.pack(order + "H", value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("force_pillow", [False, True])
def test_tiff_lzw_is_read_at_true_bit_depth(tmp_path, monkeypatch, force_pillow):
    if force_pillow:  # the fallback path, also where imagecodecs is installed
        monkeypatch.setattr(xio_tiff, "_tiff_missing_codec", lambda page: "LZW compression")
    a = _scaled(16)
    p16 = tmp_path / "lzw16.tif"
    Image.fromarray(a).save(p16, compression="tiff_lzw")
    r = read_image(p16)
    assert (r.bits, r.format, r.pixels.dtype) == (16, "tiff", np.uint16)
    np.testing.assert_array_equal(r.pixels, a)
    a8 = _sample8()
    p8 = tmp_path / "lzw8_white.tif"
    Image.fromarray(a8).save(p8, compression="tiff_lzw")
    _patch_tiff_tag(p8, 262, 0)  # MINISWHITE (Pillow inverts 8-bit MINISWHITE while decoding)
    r = read_image(p8)
    assert (r.bits, r.pixels.dtype, r.inverted) == (8, np.uint8, True)
    np.testing.assert_array_equal(r.pixels, 255 - a8)


def test_tiff_fallback_refuses_a_lower_bit_depth(tmp_path, monkeypatch):
    import tifffile

    monkeypatch.setattr(xio_tiff, "_tiff_missing_codec", lambda page: "LZW compression")
    a = _scaled(16, 64)
    p = tmp_path / "rgb16.tif"
    tifffile.imwrite(p, np.dstack([a, a, a]), photometric="rgb")  # Pillow gives 8-bit RGB
    with pytest.raises(ImageReadError, match="LZW compression needs the 'imagecodecs' package"):
        read_image(p)


def test_tiff_codec_missing_everywhere_is_named(tmp_path):
    import importlib.util

    import tifffile

    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs installed: the codec is not missing")
    p = tmp_path / "j2k.tif"
    tifffile.imwrite(p, _scaled(16, 64))
    _patch_tiff_tag(p, 259, 34712)  # Compression: JPEG 2000 (neither tifffile nor Pillow alone)
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    reason = ei.value.reason
    assert "JPEG2000" in reason and "imagecodecs" in reason and "corrupt" not in reason


def test_animated_png_is_refused(tmp_path):
    """An APNG holds several images; reading its first frame alone would pass silently."""
    from PIL import Image

    frames = [Image.fromarray((_scaled(8, 32) // k).astype(np.uint8)) for k in (1, 2, 3)]
    p = tmp_path / "cine.png"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    with Image.open(p) as im:
        assert im.n_frames == 3  # Pillow wrote an animated PNG
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    assert "animated PNG with 3 frames" in ei.value.reason and "cine.png" in str(ei.value)
    single = tmp_path / "still.png"
    frames[0].save(single)
    assert read_image(single).pixels.shape == _scaled(8, 32).shape


@pytest.mark.parametrize("kind,count", [("imwrite_stack", 3), ("pages", 3), ("series", 2),
                                        ("planes", 2)])
def test_multi_page_tiff_is_refused(tmp_path, kind, count):
    import tifffile

    a = _scaled(16, 64)
    p = tmp_path / f"{kind}.tif"
    if kind == "imwrite_stack":  # the reviewer's file: tifffile stores (3, H, W) as planar RGB
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tifffile.imwrite(p, np.stack([a, a // 2, a // 3]))
    elif kind == "pages":
        tifffile.imwrite(p, np.stack([a, a // 2, a // 3]), photometric="minisblack")
    elif kind == "series":
        with tifffile.TiffWriter(p) as tw:
            tw.write(a)
            tw.write((a >> 8).astype(np.uint8))
    else:  # two grey planes in one page, the second an UNSPECIFIED extra sample (not alpha)
        tifffile.imwrite(p, np.stack([a, a // 2]), photometric="minisblack",
                         planarconfig="separate")
    with pytest.raises(ImageReadError, match=rf"multi-(page|frame) TIFF\b.*\b{count}\b") as ei:
        read_image(p)
    assert "colour channels differ" not in ei.value.reason


def test_tiff_photometric_cmyk_lab_refused_and_palette_applied(tmp_path):
    """Equal C, M and Y inks (a grey CMYK TIFF) were read as grey levels: the image came out
    inverted, as did a palette TIFF whose colour map is not the identity (its indices were
    taken for grey levels)."""
    import tifffile

    a = _sample8(64)
    tifffile.imwrite(tmp_path / "cmyk.tif", np.dstack([255 - a] * 3 + [np.zeros_like(a)]),
                     photometric="separated")
    tifffile.imwrite(tmp_path / "lab.tif", np.dstack([a] * 3), photometric="cielab")
    for name, what in [("cmyk.tif", "SEPARATED (CMYK)"), ("lab.tif", "CIELAB")]:
        with pytest.raises(ImageReadError, match=re.escape(f"photometric interpretation {what}")):
            read_image(tmp_path / name)
    ramp = np.arange(256, dtype=np.uint16)
    inverse = np.tile((255 - ramp) * 257, (3, 1))  # an inverted grey palette
    tifffile.imwrite(tmp_path / "pal.tif", a, photometric="palette", colormap=inverse)
    rad = read_image(tmp_path / "pal.tif")
    assert rad.bits == 8 and rad.pixels.dtype == np.uint8
    np.testing.assert_array_equal(rad.pixels, 255 - a)
    fine = np.tile(ramp * 100 + 7, (3, 1))  # 16-bit grey levels
    tifffile.imwrite(tmp_path / "pal16.tif", a, photometric="palette", colormap=fine)
    rad = read_image(tmp_path / "pal16.tif")
    assert rad.bits == 16
    np.testing.assert_array_equal(rad.pixels, a.astype(np.uint16) * 100 + 7)
    colour = np.stack([ramp * 256, ramp * 128, ramp * 256])
    tifffile.imwrite(tmp_path / "palc.tif", a, photometric="palette", colormap=colour)
    with pytest.raises(ImageReadError, match="colour image"):
        read_image(tmp_path / "palc.tif")
    Image.fromarray(a).convert("P").save(tmp_path / "pil.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "pil.tif").pixels, a)  # v * 256 map


def _packed_tiff(path, a, bps):
    """A little-endian, uncompressed, one-strip grey TIFF with ``bps``-bit samples packed
    MSB first, rows padded to whole bytes (what 10/12/14-bit scanners write)."""
    h, w = a.shape
    bits = ((a[..., None].astype(np.int64) >> np.arange(bps - 1, -1, -1)) & 1).astype(np.uint8)
    rows = bits.reshape(h, w * bps)
    rows = np.pad(rows, ((0, 0), (0, -(w * bps) % 8)))
    data = np.packbits(rows, axis=1).tobytes()
    tags = [(256, w), (257, h), (258, bps), (259, 1), (262, 1), (273, None), (277, 1),
            (278, h), (279, len(data))]
    start = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", tag, 4, 1, start if v is None else v) for tag, v in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + data)
    return path


def test_tiff_odd_bit_depths(tmp_path, monkeypatch):
    """Packed 12-bit samples were refused as needing imagecodecs for 'NONE compression', and
    once decoded (imagecodecs installed) read as 16-bit data; a 1-bit TIFF was refused as
    'sample type bool'."""
    import importlib.util

    a = _scaled(12, 32)
    path = _packed_tiff(tmp_path / "p12.tif", a, 12)
    if importlib.util.find_spec("imagecodecs") is None:
        with pytest.raises(ImageReadError, match="TIFF with 12-bit packed samples needs the "
                                                 "'imagecodecs' package"):
            read_image(path)
        monkeypatch.setattr(xio_tiff, "_decode_tiff_page", lambda path, page: a)  # as decoded
    rad = read_image(path)
    assert rad.bits == 12
    np.testing.assert_array_equal(rad.pixels, a)
    import tifffile

    tifffile.imwrite(tmp_path / "bw.tif", a > 2000)
    with pytest.raises(ImageReadError, match="1-bit"):
        read_image(tmp_path / "bw.tif")


def test_exif_and_tiff_orientation_is_applied(tmp_path):
    """A JPEG/PNG with an EXIF Orientation, or a TIFF with tag 274, is shown rotated or mirrored
    by every viewer, but was read (and its enhanced output written) as stored: a radiograph on
    its side. Pixels now come in display order, as Pillow's exif_transpose gives them."""
    import tifffile
    from PIL import ImageOps

    a = _sample8(64)  # 64 x 48: not square
    for o in range(1, 9):
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = o
        im.save(tmp_path / f"r{o}.png", exif=exif)
        with Image.open(tmp_path / f"r{o}.png") as shown:
            want = np.asarray(ImageOps.exif_transpose(shown))
        tifffile.imwrite(tmp_path / f"r{o}.tif", a, extratags=[(274, "H", 1, o, True)])
        for name in (f"r{o}.png", f"r{o}.tif"):
            np.testing.assert_array_equal(read_image(tmp_path / name).pixels, want, err_msg=name)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise for display
    im.save(tmp_path / "r6.jpg", exif=exif, quality=95)
    assert read_image(tmp_path / "r6.jpg").shape == a.shape[::-1]


def test_tiff_thumbnail_page_is_not_a_second_image(tmp_path):
    import tifffile

    a = _scaled(16, 64)
    p = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(a)
        tw.write(np.ascontiguousarray(a[::4, ::4]), subfiletype=1)  # reduced-resolution page
    np.testing.assert_array_equal(read_image(p).pixels, a)


def test_garbage_tiff_logs_nothing(tmp_path, caplog):
    p = tmp_path / "garbage.tif"
    p.write_bytes(b"II*\x00 garbage, not a TIFF")
    tiff_log = logging.getLogger("tifffile")
    level = tiff_log.level
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ImageReadError, match="TIFF"):
            read_image(p)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("tifffile")] == []
    assert tiff_log.level == level  # silenced only during the read


def _compressed_dicom(path, tsyntax, frame):
    """A DICOM whose encapsulated pixel data is ``frame``, claimed compressed as ``tsyntax``."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(_make_dicom(path, _scaled(12, 64)))
    ds.file_meta.TransferSyntaxUID = tsyntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path)
    return path


@pytest.mark.parametrize("codec", ["rle", "jpeg-ls"])
def test_dicom_corrupt_compressed_data_is_called_corrupt(tmp_path, codec):
    pytest.importorskip("pydicom")
    from pydicom.uid import JPEGLSLossless, RLELossless

    if codec == "jpeg-ls":
        pytest.importorskip("libjpeg")  # pylibjpeg-libjpeg: the decoder is installed
        frame = b"\xff\xd8\xff\xf7" + bytes(200)  # SOI, SOF55 and zeros: a broken header
        p = _compressed_dicom(tmp_path / "jls.dcm", JPEGLSLossless, frame)
    else:  # pydicom decodes RLE itself
        p = _compressed_dicom(tmp_path / "rle.dcm", RLELossless, bytes(64))
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    reason = ei.value.reason
    assert "could not be decoded" in reason and "corrupt" in reason and "install" not in reason


def test_dicom_missing_decoder_names_the_right_package(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    pixels = pytest.importorskip("pydicom.pixels")  # pydicom >= 3: its decoder registry
    from pydicom.uid import JPEG2000Lossless

    p = _compressed_dicom(tmp_path / "j2k.dcm", JPEG2000Lossless, b"\xff\x4f\xff\x51" + bytes(200))
    monkeypatch.setattr(pixels.get_decoder(JPEG2000Lossless), "_available", {})  # none installed
    with pytest.raises(ImageReadError) as ei:
        read_image(p)
    reason = ei.value.reason
    assert "JPEG 2000" in reason and "no decoder" in reason
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in reason and "python-gdcm" in reason
    assert "pylibjpeg-libjpeg" not in reason


def test_write_to_missing_folder_is_an_image_write_error(tmp_path):
    target = tmp_path / "no_such_folder" / "x.png"
    with pytest.raises(ImageWriteError, match="does not exist") as ei:
        write_image(target, _sample8(64))
    assert str(target) in str(ei.value)
    assert list(tmp_path.iterdir()) == []


def test_write_a_name_near_the_file_system_limit(tmp_path):
    """A legal 250-byte file name could not be written: its temporary file's name (the name
    plus a dot, 8 random characters and '.tmp') was over the 255-byte limit."""
    for name in ["x" * 246 + ".png", "é" * 123 + ".png"]:  # 250 and 250 bytes
        assert write_image(tmp_path / name, _sample8(64)).name == name
        np.testing.assert_array_equal(read_image(tmp_path / name).pixels, _sample8(64))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 246 + ".png",
                                                                 "é" * 123 + ".png"])


@pytest.mark.parametrize("bits", [12.5, 12.0, "12", True, np.float64(12)])
def test_write_bits_must_be_an_integer(tmp_path, bits):
    # 12.5 and "12" raised TypeError; True was taken as a 1-bit depth ("outside [0, 1] for True bits")
    with pytest.raises(ImageWriteError, match="bits must be an integer"):
        write_image(tmp_path / "a.png", _scaled(12, 64), bits=bits)
    assert list(tmp_path.iterdir()) == []


def test_write_bits_as_numpy_integer(tmp_path):
    a = _scaled(12, 64)
    r = read_image(write_image(tmp_path / "a.png", a, bits=np.int64(12)))
    assert r.bits == 12
    np.testing.assert_array_equal(r.pixels, a)


def test_write_refuses_masked_pixels(tmp_path):
    # np.asarray dropped the mask: the hidden values were written as pixels
    a = _sample8(64)
    with pytest.raises(ImageWriteError, match="masked"):
        write_image(tmp_path / "m.png", np.ma.masked_array(a, mask=a > 200))
    assert list(tmp_path.iterdir()) == []
    r = read_image(write_image(tmp_path / "ok.png", np.ma.masked_array(a, mask=False)))
    np.testing.assert_array_equal(r.pixels, a)


def test_write_takes_the_tensors_the_library_returns(tmp_path):
    # torch outputs that np.asarray refuses: requires_grad (RuntimeError), bfloat16 (TypeError)
    torch = pytest.importorskip("torch")
    f = torch.from_numpy(_sample8(64).astype(np.float32) / 255)
    want = read_image(write_image(tmp_path / "np.png", f.numpy())).pixels
    for name, t in [("grad", f.clone().requires_grad_(True)), ("bf16", f.bfloat16())]:
        got = read_image(write_image(tmp_path / f"{name}.png", t)).pixels
        expect = want if name == "grad" else read_image(
            write_image(tmp_path / "bf.png", f.bfloat16().float().numpy())).pixels
        np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_files_are_refused_even_where_pillow_is_told_to_pad_them(tmp_path, fmt,
                                                                           monkeypatch):
    """A host process (a torch data loader, say) may set Pillow's global
    LOAD_TRUNCATED_IMAGES: Pillow then pads a cut file with black instead of failing, and a batch
    would enhance and record the padded image. The reader must still refuse it."""
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    a = _sample8(128)
    good = tmp_path / f"good.{fmt}"
    Image.fromarray(a).save(good, **({"quality": 90} if fmt == "jpg" else {}))
    data = good.read_bytes()
    assert np.array_equal(read_image(good).pixels, a) or fmt == "jpg"
    for cut in (len(data) // 2, len(data) - 30):  # inside the last IDAT or the last scan
        p = tmp_path / f"cut{cut}.{fmt}"
        p.write_bytes(data[:cut])
        with pytest.raises(ImageReadError, match="truncated") as ei:
            read_image(p)
        assert p.name in str(ei.value)
    # trailing bytes after the end of the image are not a truncation
    p = tmp_path / f"trailing.{fmt}"
    p.write_bytes(data + b"\0" * 100)
    assert read_image(p).pixels.shape == a.shape


def test_truncated_tiff_is_refused_on_the_pillow_fallback_too(tmp_path, monkeypatch):
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(xio_tiff, "_tiff_missing_codec", lambda page: "LZW compression")
    a = _scaled(16, 128)
    good = tmp_path / "good.tif"
    import tifffile
    tifffile.imwrite(good, a, rowsperstrip=16)  # the IFD before the strips, so a cut keeps it
    np.testing.assert_array_equal(read_image(good).pixels, a)
    data = good.read_bytes()
    p = tmp_path / "cut.tif"
    p.write_bytes(data[:len(data) - 100])
    with pytest.raises(ImageReadError, match="truncated TIFF") as ei:
        read_image(p)
    assert "cut.tif" in str(ei.value)
