"""``xvert-gpu preprocess INPUT... -o OUTDIR``: write Xp and the HFC of each image as float32 TIFF.

INPUTs are image files and folders, chosen as ``xvert-gpu enhance`` chooses them
(:func:`xvert_gpu.batch.paths.plan`): folders are walked recursively in sorted order and their
tree is mirrored under OUTDIR, non-image and hidden files met there are ignored (and listed), an
input inside OUTDIR is refused. ``a.png`` gives ``a_xp.tif`` and ``a_hfc.tif``. OUTDIR gets
a marker file (``.xvert_gpu.preprocess``), so that a rerun may write into it when it lies in an
input folder, and walks leave it out. Two inputs with
the same output names: the second fails, naming the first. Each image is read at its true bit
depth and scaled to [0, 1] (SPEC section 1). Each output is written to a hidden temporary file
next to it and renamed, so no partial file has a final name; existing outputs are replaced.
A file that cannot be read, preprocessed or written is reported as ``error: path: reason`` and
the others go on. Exit status: 0, 1 when some file failed, 2 for usage errors (bad OUTDIR,
missing input), 130 when interrupted by Ctrl-C and 143 by SIGTERM (which stops it as cleanly:
the file being written leaves no temporary file).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path, PurePath
from typing import Any

HELP = "write Xp and the HFC (float32 TIFF) for each image of files and folders"

#: What each output holds, by the suffix of its name: an attribute of Preprocessed.
FIELDS = ("xp", "hfc")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("preprocess", help=HELP, description=HELP)
    p.add_argument("images", nargs="+", metavar="INPUT",
                   help="image files and folders (walked recursively, tree mirrored in OUTDIR)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR",
                   help="output folder (created; must not contain the inputs)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def _xp_name(name: str, in_format: str, out_format: str) -> str:
    """The name of an input's Xp output: ``a.png`` -> ``a_xp.tif``; a name without an image
    extension (a DICOM named by its UID) is kept whole: ``1.2.840.5`` -> ``1.2.840.5_xp.tif``."""
    from ..io import EXTENSIONS

    p = PurePath(name)
    stem = p.stem if p.suffix.lower() in EXTENSIONS else p.name
    return f"{stem}_{FIELDS[0]}.tif"


def _output_names(xp_rel: str) -> dict[str, str]:
    """Outputs (relative to OUTDIR) by field, from the Xp output's name."""
    stem = xp_rel[: -len(f"_{FIELDS[0]}.tif")]
    return {field: f"{stem}_{field}.tif" for field in FIELDS}


def _reason(exc: BaseException) -> str:
    # ImageReadError's message starts with the path, which the caller prints already.
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def _write_tiff(target: Path, image: Any) -> None:
    """Write ``image`` (float32, any range) to ``target`` atomically, as ``write_image`` does."""
    import io

    import tifffile

    from ..io import write_atomic

    data = io.BytesIO()
    tifffile.imwrite(data, image)
    write_atomic(target, data)


def _each(the_plan, device: str, fail) -> int:
    """Preprocess and write every planned file; returns how many were done."""
    from ..batch.paths import safe_output
    from ..batch.report import printable
    from ..io import read_image
    from ..preprocess import preprocess

    done = 0
    for job in the_plan.jobs:
        try:
            p = preprocess(read_image(job.source).as_float(), device=device)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            fail(job.source, _reason(exc))
            continue
        try:
            for field, rel in _output_names(job.rel).items():
                _write_tiff(safe_output(the_plan.outdir, rel), getattr(p, field))
        except Exception as exc:  # noqa: BLE001 - a full disk, a symlink in OUTDIR...
            fail(job.source, f"cannot write output: {_reason(exc)}")
            continue
        done += 1
        print(printable(f"{job.source}: WLS iterations {p.info[0].iterations} + "
                        f"{p.info[1].iterations}"), flush=True)
    return done


def run(args: argparse.Namespace) -> int:
    from ..batch.errors import UsageError
    from ..batch.paths import PREPROCESS_MARKER, plan
    from ..batch.report import printable
    from ..batch.signals import interrupt_signal, sigterm_interrupts

    try:
        # The format choice only feeds _xp_name, which ignores it: outputs are always TIFF.
        the_plan = plan(list(args.images), args.out, "tiff", namer=_xp_name)
        the_plan.outdir.mkdir(parents=True, exist_ok=True)
        # marks OUTDIR as ours: a rerun may write into it even inside an input folder, and
        # other runs leave it out of their walks (its float TIFFs are not radiographs)
        (the_plan.outdir / PREPROCESS_MARKER).touch()
    except (UsageError, OSError) as exc:
        print(f"xvert-gpu preprocess: error: {exc}", file=sys.stderr)
        return 2
    failed = 0

    def fail(path: str, reason: str) -> None:
        nonlocal failed
        failed += 1
        print(printable(f"error: {path}: {reason}"), file=sys.stderr, flush=True)

    for path, reason in the_plan.rejected:
        fail(path, reason)
    try:
        with sigterm_interrupts():  # SIGTERM stops like Ctrl-C: no temporary file left behind
            done = _each(the_plan, args.device, fail)
    except KeyboardInterrupt as exc:
        signum = interrupt_signal(exc)
        print(f"xvert-gpu preprocess: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    for path, why in the_plan.ignored:
        print(printable(f"{path}: ignored ({why})"))
    print(printable(f"preprocess: {done} done, {failed} failed, {len(the_plan.ignored)} ignored "
                    f"(not images); outputs in {the_plan.outdir}"))
    return 1 if failed else 0
