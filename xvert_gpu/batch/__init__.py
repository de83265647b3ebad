"""Batch enhancement of image archives (``xvert-gpu enhance``).

>>> from xvert_gpu.batch import BatchOptions, enhance_archive      # doctest: +SKIP
>>> summary = enhance_archive(BatchOptions(["archive/"], "enhanced/"))
>>> summary.done, summary.skipped, summary.failed                  # doctest: +SKIP

Modules, one concept each:

- :mod:`~xvert_gpu.batch.paths`: which files, where their outputs go, what is refused;
- :mod:`~xvert_gpu.batch.formats`: ``--format`` and output names;
- :mod:`~xvert_gpu.batch.manifest`: the SQLite record of every file in OUTDIR;
- :mod:`~xvert_gpu.batch.resume`: skip, redo or refuse (``--resume``, ``--overwrite``);
- :mod:`~xvert_gpu.batch.outdir`: the OUTDIR lock and stale temporary files;
- :mod:`~xvert_gpu.batch.work`: the steps of one file (read, enhance, write);
- :mod:`~xvert_gpu.batch.pipeline`: the local run (I/O threads around the network);
- :mod:`~xvert_gpu.batch.distributed`: the Dask run;
- :mod:`~xvert_gpu.batch.report`: progress bar and summary;
- :mod:`~xvert_gpu.batch.runner`: one run from start to end.
"""

from .errors import Terminated, UsageError
from .options import BatchOptions
from .report import Summary
from .runner import enhance_archive

__all__ = ["BatchOptions", "Summary", "Terminated", "UsageError", "enhance_archive"]
