"""The evaluation report: the four measures on the spine ROIs, Table I, comparison sheets.

>>> result = evaluate(["film1.png", "jsrt/"], methods=("clahe", "farbman"),
...                   out_dir="report")                                  # doctest: +SKIP

For each image (SPEC section 7):

1. :func:`xvert_gpu.io.read_image` reads it at its true bit depth.
2. :func:`xvert_gpu.roi.spine_rois` finds two 290-high, 512-wide ROIs on the spine of the
   *original* (upper, then lower); :func:`xvert_gpu.roi.crop_roi` cuts them. An image smaller
   than the ROI along either axis is refused (a :class:`Failure` naming its size and the size
   needed; the other images go on): SPEC section 7 scores 512x290 ROIs, and zero padding would
   add a black border to every measure (entropy and Tenengrad of a constant image would not be
   zero), while a ROI clipped to the image would not be the paper's ROI.
3. Every method runs on the *full* image; the same two boxes are cut from each output. The
   original itself is scored too (method ``"original"``), so the reader sees where the methods
   start from.
4. Per ROI: entropy, Tenengrad and LPC-SI of the ROI, and TMQI with the original ROI at its own bit
   depth as the reference and the 8-bit version of the ROI as the test image
   (:mod:`xvert_gpu.metrics`).

Bit depths. Method outputs keep the input's dtype and bit depth (uint8; 12- or 16-bit data in
uint16; float32 on [0, 1] for float TIFFs). Entropy, Tenengrad and LPC-SI get the ROI divided by
the largest value of its bit depth (255, 4095, 65535), i.e. on [0, 1], which is the metrics'
float convention (uint8 ROIs go in as they are, which is the same). TMQI's 8-bit test image is
``round(x * 255 / (2**bits - 1))`` (MATLAB rounding, halves away from zero): ``round(x / 257)``
for 16-bit data, as SPEC section 7 says for uint16, and ``round(x * 255 / 4095)`` for 12-bit data,
which the SPEC's uint16 rule would wrongly treat as 16-bit (it would darken it 16 times); floats
give ``round(255 * clip(x, 0, 1))``.

Methods: ``"xvertnet"`` (``Enhancer.from_pretrained(model, device=device)`` from
:mod:`xvert_gpu.enhancer`, loaded once, imported only when asked for) and the baselines of
:mod:`xvert_gpu.baselines` (``"clahe"``, ``"farbman"``).

Written to ``out_dir``:

- ``scores.csv``: one row per image, ROI and method (``original`` included): the box, the bit
  depth and the four measures;
- ``table1.md`` and ``table1.csv``: Table I (:func:`xvert_gpu.stats.table_one`): mean +- std after
  outlier removal, ``*`` for p < 0.05 against the proposed method (``xvertnet`` when it was
  evaluated, else the first method) by the paired Wilcoxon test, best mean in bold. Pairing needs
  complete cases, so the table uses the ROIs that every method in it scored;
- ``sheet_001.png``, ...: the ROIs side by side, one row per image ROI, one column per method,
  scores in the titles, ``images_per_sheet`` images per sheet;
- ``failures.csv`` when anything failed.

An image that cannot be read, or a method that fails on an image, is recorded as a
:class:`Failure` (file, method, reason) and the rest goes on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import metrics
from .io import EXTENSIONS, Radiograph, image_files, read_image
from .roi import crop_roi, spine_rois
from .stats import TableOne, table_one, write_rows_csv

__all__ = ["evaluate", "find_images", "score_roi", "roi_size_problem", "to_uint8",
           "EvaluationResult", "Failure", "METHODS", "MEASURES", "ROI_SIZE", "IMAGE_EXTENSIONS"]

#: Methods :func:`evaluate` knows.
METHODS = ("xvertnet", "clahe", "farbman")
#: The input itself, scored alongside the methods.
ORIGINAL = "original"
#: The measures, in Table I's column order.
MEASURES = ("entropy", "tenengrad", "lpc_si", "tmqi")
#: The columns of ``scores.csv``.
SCORE_COLUMNS = ("dataset", "image", "roi", "top", "left", "height", "width", "bits", "method",
                 *MEASURES)
#: ROI size (height, width) of the paper's evaluation.
ROI_SIZE = (290, 512)
ROI_NAMES = ("upper", "lower")
#: File name extensions (lower case) picked up when a folder is walked.
IMAGE_EXTENSIONS = tuple(EXTENSIONS)  # every extension read_image knows


@dataclass(frozen=True)
class Failure:
    """Something that did not work: ``method`` is None when the image itself failed."""

    path: str
    method: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.method + ': ' if self.method else ''}{self.reason}"


@dataclass
class EvaluationResult:
    """What :func:`evaluate` did.

    Attributes
    ----------
    rows : list of dict
        The rows of ``scores.csv``.
    table : TableOne or None
        Table I (None when no ROI was scored by every method).
    failures : list of Failure
    methods : tuple of str
        The methods that were run (a method that could not be loaded is left out).
    proposed : str or None
        The method Table I tests the others against.
    n_images : int
        Images scored (read and ROIs scored on the original).
    files : dict
        ``scores``, ``table_md``, ``table_csv`` (and ``failures``) paths.
    sheets : list of Path
        The comparison sheets.
    """

    rows: list[dict]
    table: TableOne | None
    failures: list[Failure]
    methods: tuple[str, ...]
    proposed: str | None
    n_images: int
    files: dict[str, Path] = field(default_factory=dict)
    sheets: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

def find_images(paths: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None
                ) -> tuple[list[Path], list[Failure]]:
    """Files to evaluate: files as given, folders walked recursively for :data:`IMAGE_EXTENSIONS`.

    ``exclude``: a folder whose files a walk leaves out (the report folder: its comparison
    sheets are PNGs, not radiographs to score).

    Returns
    -------
    files : list of Path
        In the order given, each folder's files sorted; duplicates dropped. Paths that do not
        exist are kept, so that reading them reports the problem.
    problems : list of Failure
        Folders without any image file.
    """
    files: list[Path] = []
    problems: list[Failure] = []
    skip = Path(exclude).resolve() if exclude is not None else None
    for p in map(Path, paths):
        if p.is_dir():
            found = image_files(p)
            if skip is not None:
                found = [f for f in found if not _within(f.resolve(), skip)]
            if not found:
                problems.append(Failure(str(p), None, "no image files "
                                        f"({', '.join(IMAGE_EXTENSIONS)}) in this folder"))
            files.extend(found)
        else:
            files.append(p)
    return list(dict.fromkeys(files)), problems


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _dataset_name(paths: Sequence[Path]) -> str:
    parents = {str(p.parent.resolve()) for p in paths}
    if len(parents) == 1:
        return Path(parents.pop()).name or "data"
    try:
        return Path(os.path.commonpath(list(parents))).name or "data"
    except ValueError:  # different drives
        return "data"


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def _max_value(bits: int) -> float:
    return 1.0 if bits == 32 else float(2 ** bits - 1)


def to_uint8(roi: np.ndarray, bits: int) -> np.ndarray:
    """The 8-bit version of an image at ``bits`` (32: float on [0, 1]), MATLAB rounding.

    ``round(x * 255 / (2**bits - 1))``: uint8 unchanged, 16-bit ``round(x / 257)``, 12-bit
    ``round(x * 255 / 4095)``; floats ``round(255 * clip(x, 0, 1))``.
    """
    if roi.dtype == np.uint8 and bits == 8:
        return roi
    x = roi.astype(np.float64)
    if bits == 32:
        x = np.clip(x, 0.0, 1.0) * 255.0
    else:
        x = x * (255.0 / _max_value(bits))
    return np.clip(metrics.round_half_away(x), 0, 255).astype(np.uint8)


def roi_size_problem(shape: tuple[int, ...]) -> str | None:
    """Why an image of ``shape`` (rows, columns) is too small for the ROIs; None if it is not.

    >>> roi_size_problem((64, 600))
    'image is 600x64 pixels (width x height); the spine ROIs need at least 512x290 (SPEC section 7)'
    """
    h, w = (int(v) for v in shape[:2])
    if h >= ROI_SIZE[0] and w >= ROI_SIZE[1]:
        return None
    return (f"image is {w}x{h} pixels (width x height); the spine ROIs need at least "
            f"{ROI_SIZE[1]}x{ROI_SIZE[0]} (SPEC section 7)")


def score_roi(roi: np.ndarray, reference: np.ndarray, bits: int) -> dict[str, float]:
    """The four measures of one ROI.

    Parameters
    ----------
    roi : 2-D array
        The method's output ROI at the input's bit depth.
    reference : 2-D array
        The original ROI at its own bit depth (TMQI's reference).
    bits : int
        Bit depth of both (32: float on [0, 1]).
    """
    unit = roi if roi.dtype == np.uint8 and bits == 8 else (
        roi.astype(np.float64) / _max_value(bits))
    return {"entropy": metrics.entropy(unit),
            "tenengrad": metrics.tenengrad(unit),
            "lpc_si": metrics.lpc_si(unit),
            "tmqi": metrics.tmqi(reference, to_uint8(roi, bits))}


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

Method = Callable[[Radiograph], np.ndarray]


def _baseline(name: str, params: Mapping[str, Any], device: str) -> Method:
    from .baselines import farbman, get

    fn = get(name)
    kwargs = dict(params)
    if fn is farbman:
        kwargs.setdefault("device", device)

    def run(rad: Radiograph) -> np.ndarray:
        bits = None if rad.pixels.dtype.kind == "f" else rad.bits
        return fn(rad.pixels, bits=bits, **kwargs)

    return run


def _xvertnet(model: str, device: str, params: Mapping[str, Any]) -> Method:
    # Imported here: the enhancer pulls in torch, and the baselines must work without it.
    from .enhancer import Enhancer

    enhancer = Enhancer.from_pretrained(model, device=device, **params)

    def run(rad: Radiograph) -> np.ndarray:
        return enhancer.enhance(rad.pixels, bits=rad.bits)  # bits only scales integer pixels

    return run


def _make_method(name: str, model: str, device: str, params: Mapping[str, Any]) -> Method:
    if name == "xvertnet":
        return _xvertnet(model, device, params)
    return _baseline(name, params, device)


# ----------------------------------------------------------------------------------------------
# Comparison sheets
# ----------------------------------------------------------------------------------------------

def _title(method: str, s: Mapping[str, float] | None) -> str:
    if s is None:
        return f"{method}\n(failed)"
    return (f"{method}\nH {s['entropy']:.2f}  TC {s['tenengrad']:.4f}\n"
            f"LPC {s['lpc_si']:.3f}  TMQI {s['tmqi']:.3f}")


def _write_sheet(path: Path, entries: list[dict], columns: Sequence[str]) -> Path:
    """One PNG: a row per image ROI, a column per method (original first), scores in titles."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    nrows = sum(len(e["boxes"]) for e in entries)
    ncols = len(columns)
    h, w = ROI_SIZE
    panel_w = 3.4
    fig = Figure(figsize=(panel_w * ncols + 0.6, (panel_w * h / w + 0.75) * nrows), dpi=110)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    r = 0
    for e in entries:
        for k, roi_name in enumerate(ROI_NAMES[:len(e["boxes"])]):
            for c, m in enumerate(columns):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                crops = e["crops"].get(m)
                if crops is None:
                    ax.set_facecolor("0.85")
                    ax.set_title(_title(m, None), fontsize=8)
                else:
                    ax.imshow(crops[k], cmap="gray", vmin=0, vmax=e["max_value"],
                              interpolation="lanczos")
                    ax.set_title(_title(m, e["scores"][m][k]), fontsize=8)
                if c == 0:
                    top, left = e["boxes"][k][:2]
                    ax.set_ylabel(f"{e['name']}\n{roi_name} ({top}, {left})", fontsize=8)
            r += 1
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

def _complete_cases(rows: list[dict], methods: Sequence[str], dataset: str):
    """scores[dataset][method][measure] over the ROIs every method scored, paired by position.

    Per measure, ROIs where any method's score is undefined (NaN: TMQI of an output
    anticorrelated with the original, whose MATLAB value would be complex) are left out too.
    Returns the scores, the methods present and the ROI keys of the complete cases.
    """
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["image"], r["roi"]), {})[r["method"]] = r
    present = [m for m in methods if any(m in d for d in by_key.values())]
    keys = [k for k, d in by_key.items() if all(m in d for m in present)]
    scores: dict[str, dict[str, list[float]]] = {m: {} for m in present}
    for q in MEASURES:
        kept = [k for k in keys if all(np.isfinite(by_key[k][m][q]) for m in present)]
        for m in present:
            scores[m][q] = [by_key[k][m][q] for k in kept]
    return {dataset: scores}, present, keys


def _table_markdown(table: TableOne, dataset: str, n_rois: int, n_images: int,
                    proposed: str, failures: int) -> str:
    head = (f"# Table I: {dataset}\n\n"
            f"{n_images} image(s), {n_rois} spine ROI(s) of {ROI_SIZE[1]}x{ROI_SIZE[0]} pixels "
            f"scored by every method (entropy, Tenengrad TC, LPC-SI, TMQI; higher is better). "
            f"Proposed method: {proposed}.")
    n_used = {r["measure"]: r["n"] for r in table.rows if r["method"] == proposed}
    if any(n < n_rois for n in n_used.values()):
        head += (" Fewer ROIs in a measure: outliers (mean ± 1.96 std) removed, or scores that "
                 "are undefined (NaN in scores.csv) for some method; table1.csv gives n.")
    if failures:
        head += f" {failures} failure(s): see failures.csv."
    return head + "\n\n" + table.markdown


def evaluate(paths: Iterable[str | os.PathLike], methods: Sequence[str] = METHODS,
             out_dir: str | os.PathLike = "evaluation", model: str = "default",
             device: str = "auto", progress: bool = True, *, dataset: str | None = None,
             images_per_sheet: int = 4,
             method_params: Mapping[str, Mapping[str, Any]] | None = None,
             on_failure: Callable[[Failure], None] | None = None) -> EvaluationResult:
    """Score the original and every method on the spine ROIs of each image; write the report.

    Parameters
    ----------
    paths : iterable of path
        Image files or folders (walked recursively, see :func:`find_images`).
    methods : sequence of str
        From :data:`METHODS`: ``"xvertnet"``, ``"clahe"``, ``"farbman"``.
    out_dir : path
        Folder for ``scores.csv``, ``table1.md``, ``table1.csv``, the sheets and
        ``failures.csv``; created if needed.
    model : str
        The XVertNet model: ``"default"`` or a ``.pt``/``.pt2`` artefact path.
    device : {"auto", "cpu", "cuda"}
        For XVertNet and Farbman's WLS solves.
    progress : bool
        Show a tqdm progress bar.
    dataset : str, optional
        Dataset name in the tables; default the name of the images' common folder.
    images_per_sheet : int
        Images per comparison sheet (two rows each).
    method_params : mapping, optional
        Extra keyword arguments per method, e.g. ``{"clahe": {"clip_limit": 0.02}}``
        (``xvertnet``: for ``Enhancer.from_pretrained``).
    on_failure : callable, optional
        Called with each :class:`Failure` as it happens (e.g. to print it).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        On an unknown method name or a bad ``images_per_sheet``.
    """
    from tqdm.auto import tqdm

    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown or '(none given)'}; "
                         f"known: {', '.join(METHODS)}")
    if int(images_per_sheet) < 1:
        raise ValueError(f"images_per_sheet must be >= 1; got {images_per_sheet}")
    method_params = dict(method_params or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    failures: list[Failure] = []

    def fail(path, method, reason):
        f = Failure(str(path), method, reason)
        failures.append(f)
        if on_failure is not None:
            on_failure(f)

    files, problems = find_images(paths, exclude=out)
    for f in problems:
        fail(f.path, f.method, f.reason)
    if dataset is None:
        dataset = _dataset_name(files) if files else "data"

    runners: dict[str, Method] = {}
    for m in methods:
        try:
            runners[m] = _make_method(m, model, device, method_params.get(m, {}))
        except Exception as exc:  # noqa: BLE001 - e.g. no weights: report, evaluate the rest
            fail("(all images)", m, f"could not be loaded: {type(exc).__name__}: {exc}")
    columns = (ORIGINAL, *runners)

    rows: list[dict] = []
    sheets: list[Path] = []
    pending: list[dict] = []
    n_images = 0

    def flush():
        if pending:
            sheets.append(_write_sheet(out / f"sheet_{len(sheets) + 1:03d}.png", pending,
                                       columns))
            pending.clear()

    bar = tqdm(files, desc="evaluate", unit="image", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.name, refresh=False)
        try:
            rad = read_image(path)
            too_small = roi_size_problem(rad.pixels.shape)
            if too_small:  # before any method runs on it: nothing to score
                fail(path, None, too_small)
                continue
            boxes = spine_rois(rad.pixels, size=ROI_SIZE)
            refs = [crop_roi(rad.pixels, b) for b in boxes]
            base_scores = [score_roi(r, r, rad.bits) for r in refs]
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            fail(path, None, reason)
            continue
        n_images += 1
        entry = {"name": path.name, "boxes": boxes, "max_value": _max_value(rad.bits),
                 "crops": {ORIGINAL: refs}, "scores": {ORIGINAL: base_scores}}

        def add_rows(method, scores):
            for roi_name, box, s in zip(ROI_NAMES, boxes, scores):
                rows.append({"dataset": dataset, "image": str(path), "roi": roi_name,
                             "top": box[0], "left": box[1], "height": box[2], "width": box[3],
                             "bits": rad.bits, "method": method, **s})

        add_rows(ORIGINAL, base_scores)
        for m, run in runners.items():
            try:
                y = run(rad)
                if not isinstance(y, np.ndarray) or y.shape != rad.pixels.shape \
                        or y.dtype != rad.pixels.dtype:
                    got = (f"{type(y).__name__} {getattr(y, 'shape', '?')} "
                           f"{getattr(y, 'dtype', '?')}")
                    raise ValueError(f"returned {got}; expected ndarray {rad.pixels.shape} "
                                     f"{rad.pixels.dtype}")
                crops = [crop_roi(y, b) for b in boxes]
                scores = [score_roi(c, r, rad.bits) for c, r in zip(crops, refs)]
            except Exception as exc:  # noqa: BLE001 - report, go on with the other methods
                fail(path, m, f"{type(exc).__name__}: {exc}")
                continue
            entry["crops"][m] = crops
            entry["scores"][m] = scores
            add_rows(m, scores)
        pending.append(entry)
        if len(pending) >= images_per_sheet:
            flush()
    bar.close()
    flush()

    files_out: dict[str, Path] = {"scores": out / "scores.csv"}
    write_rows_csv(rows, files_out["scores"], fieldnames=SCORE_COLUMNS)

    scores, present, keys = _complete_cases(rows, columns, dataset)
    proposed = None
    table = None
    if keys:
        candidates = [m for m in present if m != ORIGINAL]
        proposed = "xvertnet" if "xvertnet" in candidates else (
            candidates[0] if candidates else ORIGINAL)
        table = table_one(scores, proposed, measures=list(MEASURES), methods=present)
        files_out["table_md"] = out / "table1.md"
        files_out["table_csv"] = out / "table1.csv"
        files_out["table_md"].write_text(
            _table_markdown(table, dataset, len(keys), len({k[0] for k in keys}), proposed,
                            len(failures)),
            encoding="utf-8")
        write_rows_csv(table.rows, files_out["table_csv"])
    else:  # a table from an earlier run in this folder would no longer match scores.csv
        for name in ("table1.md", "table1.csv"):
            (out / name).unlink(missing_ok=True)
    if failures:
        files_out["failures"] = out / "failures.csv"
        write_rows_csv([{"path": f.path, "method": f.method or "", "reason": f.reason}
                        for f in failures], files_out["failures"])
    else:
        (out / "failures.csv").unlink(missing_ok=True)
    # Sheets left by an earlier, longer run in the same folder.
    for old in out.glob("sheet_*.png"):
        if re.fullmatch(r"sheet_\d{3,}\.png", old.name) and old not in sheets:
            old.unlink()
    return EvaluationResult(rows=rows, table=table, failures=failures, methods=tuple(runners),
                            proposed=proposed, n_images=n_images, files=files_out,
                            sheets=sheets)
