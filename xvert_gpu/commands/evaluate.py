"""``xvert-gpu evaluate [DATA...] --methods xvertnet,clahe,farbman --out DIR``: the Table I report.

DATA are image files or folders (walked recursively for every extension :mod:`xvert_gpu.io`
reads: .png, .jpg, .jpeg, .jpe, .tif, .tiff, .dcm, .dicom and .img); with none, the bundled sample
radiographs are evaluated. An image smaller than the 512x290 spine ROI is refused (a failure).
Writes ``scores.csv``, ``table1.md``, ``table1.csv`` and ``sheet_NNN.png`` comparison sheets (see
:mod:`xvert_gpu.evaluate`). Exit status 1 when any file or method failed (each failure is printed
with its reason), 0 otherwise; 2 when the report folder cannot be created.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import positive_int

HELP = "score the methods on the spine ROIs: scores.csv, Table I, comparison sheets"
DESCRIPTION = (HELP + ". DATA are image files or folders (walked recursively for .png, .jpg, "
               ".jpeg, .jpe, .tif, .tiff, .dcm, .dicom and .img files); with none, the bundled sample "
               "radiographs are evaluated. An image smaller than the 512x290 spine ROI is refused "
               "(a failure naming its size). Exit status 1 when any file or method failed.")


def _methods(text: str) -> list[str]:
    from ..evaluate import METHODS

    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad) or '(none)'}; "
                                         f"choose from {','.join(METHODS)}")
    return names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help=HELP, description=DESCRIPTION)
    p.add_argument("data", nargs="*", metavar="DATA",
                   help="image files or folders (default: the bundled sample radiographs)")
    p.add_argument("--methods", type=_methods, default="xvertnet,clahe,farbman",
                   help="comma-separated, from xvertnet,clahe,farbman (default: all three)")
    p.add_argument("-o", "--out", default="evaluation",
                   help="output folder (default: ./evaluation)")
    p.add_argument("--model", default="default",
                   help="XVertNet model: 'default' or a .pt/.pt2 artefact")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dataset", default=None,
                   help="dataset name in Table I (default: the images' folder name)")
    p.add_argument("--per-sheet", type=positive_int, default=4, metavar="N",
                   help="images per comparison sheet (default 4)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, no table on stdout (failures are still printed)")
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..evaluate import evaluate
    from ..samples import NAMES, sample_path

    methods = args.methods if isinstance(args.methods, list) else _methods(args.methods)
    try:  # before any image is scored: a report that cannot be written is a usage error
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"xvert-gpu evaluate: error: cannot create the report folder {args.out}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    data = list(args.data)
    dataset = args.dataset
    if not data:
        data = [sample_path(n) for n in NAMES]
        dataset = dataset or "samples"

    def report(failure) -> None:
        tqdm.write(f"error: {failure}", file=sys.stderr)

    result = evaluate(data, methods=methods, out_dir=args.out, model=args.model,
                      device=args.device, progress=not args.quiet, dataset=dataset,
                      images_per_sheet=args.per_sheet, on_failure=report)
    if not args.quiet and result.table is not None:
        print(result.table.markdown)
    written = [p.name for p in result.files.values()] + [p.name for p in result.sheets]
    print(f"{result.n_images} image(s), methods {', '.join(result.methods) or '(none)'}: "
          f"wrote {', '.join(written)} to {args.out}")
    if result.failures:
        print(f"{len(result.failures)} failure(s); see {result.files['failures']}",
              file=sys.stderr)
    return 1 if result.failures else 0
