"""The ``xvert-gpu`` command: ``xvert-gpu bench ...`` and ``xvert-gpu preprocess IMAGE... -o DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _preprocess(args: argparse.Namespace) -> int:
    import tifffile
    from PIL import Image

    from .preprocess import preprocess

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in map(Path, args.images):
        try:
            with Image.open(path) as im:
                a = np.asarray(im)
            if a.ndim == 3:
                if not (a[..., :3] == a[..., :1]).all():
                    raise ValueError("colour image (channels differ); XVertNet needs a grey radiograph")
                a = a[..., 0]
            p = preprocess(a, device=args.device)
        except Exception as exc:  # one bad file must not stop the others
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for field in ("xp", "hfc"):
            target = out / f"{path.stem}_{field}.tif"
            tmp = target.with_suffix(".tif.part")
            tifffile.imwrite(tmp, getattr(p, field))
            tmp.replace(target)
        print(f"{path}: WLS iterations {p.info[0].iterations} + {p.info[1].iterations}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xvert-gpu")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("bench", help="solver and preprocessing throughput (python -m xvert_gpu.bench)",
                   add_help=False)
    pp = sub.add_parser("preprocess", help="write Xp and the HFC (float32 TIFF) for each image")
    pp.add_argument("images", nargs="+")
    pp.add_argument("-o", "--out", required=True)
    pp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main
        return bench_main(argv[1:])
    args = ap.parse_args(argv)
    return _preprocess(args)


if __name__ == "__main__":
    sys.exit(main())
