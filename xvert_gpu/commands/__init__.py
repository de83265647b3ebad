"""Subcommands of ``xvert-gpu``: one module each, with ``add_parser(subparsers)`` and ``run(args) -> int``.

Modules import their heavy dependencies inside ``run`` so that ``xvert-gpu --help``
stays fast.
"""
