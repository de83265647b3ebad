"""The ``xvert-gpu`` command.

``xvert-gpu bench ...`` is ``python -m xvert_gpu.bench``; every other subcommand
lives in its own module under :mod:`xvert_gpu.commands` (listed in
:data:`COMMANDS`), which registers its parser and runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("preprocess", "train", "enhance", "evaluate")


def _modules():
    for name in COMMANDS:
        try:
            yield importlib.import_module(f"xvert_gpu.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"xvert_gpu.commands.{name}":
                raise  # a missing dependency inside the module is a real error


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main
        return bench_main(argv[1:])
    ap = argparse.ArgumentParser(prog="xvert-gpu",
                                 description="XVertNet spine contrast enhancement for chest X-rays")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("bench", help="solver, inference and end-to-end throughput "
                                 "(same as python -m xvert_gpu.bench)", add_help=False)
    runners = {}
    for module in _modules():
        parser = module.add_parser(sub)
        runners[parser.prog.split()[-1]] = module.run
    args = ap.parse_args(argv)
    args.argv = argv  # the command as given, for provenance records
    return int(runners[args.cmd](args) or 0)


if __name__ == "__main__":
    sys.exit(main())
