"""``xvert-gpu preprocess IMAGE... -o DIR``: write Xp and the HFC of each image as float32 TIFF."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write Xp and the HFC (float32 TIFF) for each image"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("preprocess", help=HELP, description=HELP)
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def run(args: argparse.Namespace) -> int:
    import tifffile

    from ..io import read_image
    from ..preprocess import preprocess

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in map(Path, args.images):
        try:
            p = preprocess(read_image(path).pixels, device=args.device)
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
