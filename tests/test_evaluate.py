"""The evaluation report: end to end through the CLI, failures, bit depths, the xvertnet hook."""

import csv

import numpy as np
import pytest
from PIL import Image

from xvert_gpu import baselines, metrics
from xvert_gpu.cli import main
from xvert_gpu.evaluate import (IMAGE_EXTENSIONS, MEASURES, ROI_SIZE, evaluate, find_images,
                                to_uint8)
from xvert_gpu.io import read_image, write_image
from xvert_gpu.samples import NAMES, load_sample


pytestmark = pytest.mark.usefixtures("one_numba_thread")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _small_png(path, name=NAMES[0], size=ROI_SIZE):
    """The smallest images the ROIs fit in (smaller ones are refused)."""
    Image.fromarray(load_sample(name, size)).save(path)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The out-of-the-box run: no DATA and no --methods, so the two bundled samples at full
    size with xvertnet (the bundled default model), clahe and farbman."""
    out = tmp_path_factory.mktemp("report")
    code = main(["evaluate", "--out", str(out), "--quiet"])
    return code, out


def test_report_files(report):
    code, out = report
    assert code == 0
    for name in ("scores.csv", "table1.md", "table1.csv", "sheet_001.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert not (out / "failures.csv").exists()


def test_scores_csv_has_every_image_roi_and_method(report):
    _, out = report
    rows = _rows(out / "scores.csv")
    methods = ("original", "xvertnet", "clahe", "farbman")
    assert len(rows) == len(NAMES) * 2 * len(methods)
    keys = {(r["image"].rsplit("/", 1)[-1], r["roi"], r["method"]) for r in rows}
    assert keys == {(n, roi, m) for n in NAMES for roi in ("upper", "lower") for m in methods}
    for r in rows:
        assert (int(r["height"]), int(r["width"])) == ROI_SIZE and r["bits"] == "8"
        assert all(np.isfinite(float(r[q])) for q in MEASURES if q != "tmqi" or r["method"] != "xvertnet")
    by = {(r["image"].rsplit("/", 1)[-1], r["roi"], r["method"]): r for r in rows}
    for n in NAMES:
        for roi in ("upper", "lower"):
            orig, enh = by[(n, roi, "original")], by[(n, roi, "farbman")]
            # Both baselines sharpen the spine ROIs.
            assert float(enh["tenengrad"]) > float(orig["tenengrad"])
            assert float(by[(n, roi, "clahe")]["tenengrad"]) > float(orig["tenengrad"])


def test_scores_match_metrics_on_the_roi(report):
    _, out = report
    r = next(r for r in _rows(out / "scores.csv")
             if r["method"] == "original" and r["roi"] == "upper")
    img = read_image(r["image"]).pixels
    top, left = int(r["top"]), int(r["left"])
    roi = img[top:top + ROI_SIZE[0], left:left + ROI_SIZE[1]]
    assert float(r["entropy"]) == pytest.approx(metrics.entropy(roi), abs=1e-12)
    assert float(r["tmqi"]) == pytest.approx(metrics.tmqi(roi, roi), abs=1e-12)


def test_table_has_every_method_and_measure(report):
    _, out = report
    md = (out / "table1.md").read_text()
    for word in ("original", "xvertnet", "clahe", "farbman", *MEASURES, "samples"):
        assert word in md
    rows = _rows(out / "table1.csv")
    assert {(r["method"], r["measure"]) for r in rows} == {
        (m, q) for m in ("original", "xvertnet", "clahe", "farbman") for q in MEASURES}
    # XVertNet is the proposed method: the others carry a p-value against it.
    assert all(r["p_value"] != "" for r in rows if r["method"] in ("clahe", "farbman"))


def test_sheet_is_a_valid_png(report):
    _, out = report
    with Image.open(out / "sheet_001.png") as im:
        im.verify()
    with Image.open(out / "sheet_001.png") as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 600


def test_corrupt_file_is_reported_and_the_rest_goes_on(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _small_png(data / "sub" / "good.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (data / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(["evaluate", str(data), "--methods", "clahe", "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err
    rows = _rows(out / "scores.csv")
    assert {r["image"].rsplit("/", 1)[-1] for r in rows} == {"good.png"}
    assert len(rows) == 2 * 2  # 2 ROIs x (original, clahe)
    failures = _rows(out / "failures.csv")
    assert len(failures) == 1 and failures[0]["path"].endswith("broken.png")
    assert failures[0]["reason"]
    assert (out / "table1.md").is_file() and (out / "sheet_001.png").is_file()


def test_failing_method_is_reported_per_image(tmp_path, monkeypatch):
    a = _small_png(tmp_path / "a.png", NAMES[0], (300, 520))
    b = _small_png(tmp_path / "b.png", NAMES[1], ROI_SIZE)

    def picky(image, **kw):
        if image.shape == ROI_SIZE:
            raise RuntimeError("cannot handle this one")
        return baselines.clahe(image, **kw)

    monkeypatch.setitem(baselines.BASELINES, "farbman", picky)
    seen = []
    result = evaluate([a, b], methods=("clahe", "farbman"), out_dir=tmp_path / "out",
                      progress=False, on_failure=seen.append)
    assert [(f.path.endswith("b.png"), f.method) for f in result.failures] == [(True, "farbman")]
    assert "cannot handle this one" in result.failures[0].reason and seen == result.failures
    assert len(result.rows) == 2 * 2 * 3 - 2
    # Table I pairs complete cases only: a.png's two ROIs.
    assert {r["n"] for r in result.table.rows} == {2}
    assert result.proposed == "clahe" and result.n_images == 2


def test_image_smaller_than_the_roi_is_refused(tmp_path, capsys):
    """No score on zero padding: a too small image fails, naming its size; the rest goes on."""
    data = tmp_path / "data"
    data.mkdir()
    fits = _small_png(data / "fits.png")  # exactly 512x290: boxes are the whole image
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(data / "const64.png")
    Image.fromarray(load_sample(NAMES[1], (289, 600))).save(data / "low.png")
    Image.fromarray(load_sample(NAMES[1], (400, 511))).save(data / "narrow.png")
    out = tmp_path / "out"
    code = main(["evaluate", str(data), "--methods", "clahe", "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    for name, size in [("const64.png", "64x64"), ("low.png", "600x289"), ("narrow.png", "511x400")]:
        assert (f"{data / name}: image is {size} pixels (width x height); the spine ROIs need "
                f"at least 512x290") in err, err
    rows = _rows(out / "scores.csv")
    assert {r["image"] for r in rows} == {str(fits)} and len(rows) == 2 * 2
    assert {(r["top"], r["left"]) for r in rows} == {("0", "0")}
    failures = _rows(out / "failures.csv")
    assert sorted(f["path"].rsplit("/", 1)[-1] for f in failures) == [
        "const64.png", "low.png", "narrow.png"]
    assert all(f["method"] == "" for f in failures)
    # from Python too; every image refused: no table, the failures say why
    result = evaluate([data / "const64.png"], methods=("clahe",), out_dir=tmp_path / "out2",
                      progress=False)
    assert result.n_images == 0 and result.rows == [] and result.table is None
    assert "64x64" in result.failures[0].reason and "512x290" in result.failures[0].reason


def test_undefined_scores_are_kept_out_of_table(tmp_path, monkeypatch):
    # An inverted output is anticorrelated with the original: its TMQI is undefined (NaN).
    monkeypatch.setitem(baselines.BASELINES, "farbman", lambda image, **kw: 255 - image)
    files = [_small_png(tmp_path / "a.png", NAMES[0], (300, 520))]  # ROIs inside: no padding
    result = evaluate(files, methods=("clahe", "farbman"), out_dir=tmp_path / "out",
                      progress=False)
    assert result.ok and len(result.rows) == 2 * 3
    assert all(np.isnan(r["tmqi"]) for r in result.rows if r["method"] == "farbman")
    n = {(r["method"], r["measure"]): r["n"] for r in result.table.rows}
    assert n[("clahe", "tmqi")] == 0 and n[("clahe", "entropy")] == 2
    assert "NaN" in (tmp_path / "out" / "table1.md").read_text()


class _FakeEnhancer:
    """Stands in for the trained model: CLAHE, with a record of how it was called."""

    calls = []

    @classmethod
    def from_pretrained(cls, model="default", device="auto"):
        cls.calls.append(("load", model, device))
        return cls()

    def enhance(self, image, *, bits=None):
        self.calls.append(("enhance", image.dtype, bits))
        return baselines.clahe(image, bits=bits, clip_limit=0.02)


def test_xvertnet_is_loaded_once_and_proposed(tmp_path, monkeypatch):
    enhancer = pytest.importorskip("xvert_gpu.enhancer")
    monkeypatch.setattr(enhancer, "Enhancer", _FakeEnhancer)
    _FakeEnhancer.calls = []
    x12 = np.rint(load_sample(NAMES[1], ROI_SIZE).astype(np.float64) * 4095 / 255).astype(np.uint16)
    write_image(tmp_path / "film12.tif", x12, bits=12)
    files = [_small_png(tmp_path / "a.png"), tmp_path / "film12.tif"]
    result = evaluate(files, methods=("xvertnet", "clahe"), out_dir=tmp_path / "out",
                      model="my.pt", device="cpu", progress=False)
    assert result.ok and result.proposed == "xvertnet"
    assert _FakeEnhancer.calls[0] == ("load", "my.pt", "cpu")
    assert sum(c[0] == "load" for c in _FakeEnhancer.calls) == 1
    assert ("enhance", np.dtype(np.uint16), 12) in _FakeEnhancer.calls
    assert {r["bits"] for r in result.rows} == {8, 12}
    assert "xvertnet" in (tmp_path / "out" / "table1.md").read_text()


def test_xvertnet_that_cannot_load_is_reported(tmp_path, monkeypatch):
    enhancer = pytest.importorskip("xvert_gpu.enhancer")

    class Broken:
        @classmethod
        def from_pretrained(cls, *a, **k):
            raise FileNotFoundError("no weights here")

    monkeypatch.setattr(enhancer, "Enhancer", Broken)
    result = evaluate([_small_png(tmp_path / "a.png")], methods=("xvertnet", "clahe"),
                      out_dir=tmp_path / "out", progress=False)
    assert [f.method for f in result.failures] == ["xvertnet"]
    assert "no weights here" in result.failures[0].reason
    assert result.methods == ("clahe",) and result.proposed == "clahe"
    assert {r["method"] for r in result.rows} == {"original", "clahe"}


def test_to_uint8_bit_depths():
    x16 = np.array([[0, 257, 65535, 128]], dtype=np.uint16)
    assert to_uint8(x16, 16).tolist() == [[0, 1, 255, 0]]
    x12 = np.array([[0, 4095, 2048, 8]], dtype=np.uint16)
    # 2048 * 255 / 4095 = 127.53 -> 128; 8 * 255 / 4095 = 0.498 -> 0
    assert to_uint8(x12, 12).tolist() == [[0, 255, 128, 0]]
    x8 = np.array([[0, 200]], dtype=np.uint8)
    assert to_uint8(x8, 8) is x8
    assert to_uint8(np.array([[0.5, 1.2, -0.1]]), 32).tolist() == [[128, 255, 0]]


def test_find_images_walks_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.PNG", "a/y.dcm", "a/b/z.img", "a/b/skip.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    files, problems = find_images([tmp_path / "a", tmp_path / "x.PNG", tmp_path / "empty",
                                   tmp_path / "missing.png"])
    assert [f.name for f in files] == ["z.img", "y.dcm", "x.PNG", "missing.png"]
    assert [p.path.endswith("empty") for p in problems] == [True]
    assert ".img" in IMAGE_EXTENSIONS


def test_report_folder_inside_the_data_is_not_evaluated(tmp_path):
    """With the report inside a DATA folder (the default ./evaluation when DATA is "."), a
    second run scored the first run's comparison sheets as radiographs: 3 images from 2."""
    data = tmp_path / "data"
    (data / "evaluation").mkdir(parents=True)
    fits = _small_png(data / "fits.png")
    _small_png(data / "evaluation" / "sheet_001.png", NAMES[1])  # an earlier run's sheet
    result = evaluate([data], methods=("clahe",), out_dir=data / "evaluation", progress=False)
    assert result.n_images == 1 and result.failures == []
    assert {r["image"] for r in result.rows} == {str(fits)}
    files, _ = find_images([data], exclude=data / "evaluation")
    assert files == [fits]
    files, _ = find_images([data / "evaluation" / "sheet_001.png"], exclude=data / "evaluation")
    assert len(files) == 1  # named explicitly: evaluated


def test_report_folder_that_cannot_be_created_is_a_usage_error(tmp_path, capsys):
    """--out naming a file (or a path through one) ended in a FileExistsError traceback."""
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "report"):
        assert main(["evaluate", str(tmp_path / "a.png"), "--methods", "clahe", "--out",
                     str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"cannot create the report folder {out}" in err and "Traceback" not in err


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="zssr"):
        evaluate([], methods=("zssr",), out_dir=tmp_path)
    with pytest.raises(SystemExit):
        main(["evaluate", "--methods", "clahe,zssr", "--out", str(tmp_path)])
