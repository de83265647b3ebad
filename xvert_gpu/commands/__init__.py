"""Subcommands of ``xvert-gpu``: one module each, with ``add_parser(subparsers)`` and ``run(args) -> int``.

Modules import their heavy dependencies inside ``run`` so that ``xvert-gpu --help``
stays fast.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {v}")
    return v
