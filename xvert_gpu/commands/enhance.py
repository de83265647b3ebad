"""``xvert-gpu enhance INPUT... -o OUTDIR``: enhance every radiograph of files and folders.

See :mod:`xvert_gpu.batch` for the rules (which files, output names and formats, the manifest,
resume, Dask). Exit status: 0 when every file was enhanced or skipped as already done, 1 when
some file failed (each listed as ``path: reason``), 2 for usage errors (nothing processed),
130 when interrupted by Ctrl-C and 143 by SIGTERM (``kill``, systemd, Slurm, Kubernetes),
which stops the run just as cleanly (run the same command again to finish).
"""

from __future__ import annotations

import argparse
import signal
import sys

from . import positive_int

HELP = "enhance the spine contrast of every image in files and folders (batch, resumable)"

EPILOG = """\
Outputs mirror the input tree under OUTDIR, at the input's bit depth. --format same keeps
each file's format (JPEG becomes PNG: lossless); dcm needs DICOM inputs. OUTDIR holds a
manifest (xvert_manifest.sqlite): a rerun skips files already done with the same input,
model and parameters, and finishes what an interrupted run left; failed files are retried.
Exit status: 0 all done, 1 some files failed, 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM; stops as cleanly as Ctrl-C).
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("enhance", help=HELP, description=HELP, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and folders (walked "
                   "recursively; non-image and hidden files there are ignored and counted)")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR",
                   help="output folder (created; must not contain the inputs)")
    p.add_argument("--model", default="default",
                   help="'default' (bundled weights) or a .pt/.pt2 artefact path")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--format", default="same", choices=["same", "png", "tiff", "dcm"],
                   help="output format (default: same; JPEG input gives PNG)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="images per network call, equal sizes stacked (default 1 on CPU, "
                        "8 on CUDA; Dask tasks are single images)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="decode/encode threads; with --dask local: worker processes "
                        "(default: CPU count, 2..8)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads of the network per process/Dask worker (default: torch's)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files the manifest records as done (default: on)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every file and replace existing outputs, even unknown ones")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run on Dask: 'local' (a local cluster on 127.0.0.1) or a scheduler "
                        "address such as tcp://host:8786 (shared file system needed)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="Dask: resubmissions of a file whose worker died (default 2)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and a one-line summary (failures are still listed)")
    return p


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line as given (``args.argv`` when the CLI records it), else rebuilt."""
    if getattr(args, "argv", None):
        return list(args.argv)
    if sys.argv[1:2] == ["enhance"]:
        return list(sys.argv[1:])
    return ["enhance", *args.inputs, "-o", args.out]


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchOptions, UsageError, enhance_archive
    from ..batch.signals import interrupt_signal

    opts = BatchOptions(inputs=list(args.inputs), outdir=args.out, model=args.model,
                        device=args.device, format=args.format, batch_size=args.batch_size,
                        workers=args.workers, threads=args.threads, resume=args.resume,
                        overwrite=args.overwrite, dask=args.dask, retries=args.retries,
                        quiet=args.quiet, argv=_argv(args))
    try:
        summary = enhance_archive(opts)
    except UsageError as exc:
        print(f"xvert-gpu enhance: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # before any file was started; SIGTERM is Terminated
        signum = interrupt_signal(exc)
        print(f"xvert-gpu enhance: interrupted{' (SIGTERM)' if signum == signal.SIGTERM else ''}",
              file=sys.stderr)
        return 128 + signum
    print(summary.format(verbose=not args.quiet), flush=True)
    if summary.interrupted:
        return 128 + summary.interrupt_signal  # 130 Ctrl-C, 143 SIGTERM
    return summary.exit_code
