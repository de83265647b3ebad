"""The local run: decoding and encoding in threads, the network in the calling thread.

::

    jobs --> [I/O threads: hash + read_image] --(bounded, in order)--> main thread:
             group by (shape, dtype, bits), enhance stacks of --batch-size
         --> [I/O threads: write_image, temp file + rename] --> manifest "done"

* Reads run ahead of the network by a bounded window (``2 * workers + batch_size`` files), so
  the GPU (or the CPU's network threads) does not wait on PNG decoding, and memory stays
  bounded. Outstanding writes are bounded by the same window.
* Decoded images are taken in input order and put in buckets of equal
  :func:`~xvert_gpu.batch.work.group_key`; a bucket that reaches ``batch_size`` is enhanced
  as one stack. When more than ``hold`` images wait in partial buckets (an archive of many
  sizes), the oldest bucket goes as it is. So batches depend only on the job list and the
  settings, never on thread timing: a run is reproducible.
* ``on_start(job)`` is called (in this thread) before a file's read is queued, ``on_result``
  (in this thread) when it is done or failed; the manifest is written there, by one writer.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable

from .paths import Job
from .signals import deferred_interrupts
from .work import Loaded, Result, enhance_group, group_key, load, save

__all__ = ["run_local"]


def run_local(enhancer: Any, jobs: Iterable[Job], outdir: str, *, batch_size: int = 1,
              workers: int = 2, parameters: dict[str, Any] | None = None,
              on_start: Callable[[Job], None] = lambda job: None,
              on_result: Callable[[Result], None] = lambda result: None) -> None:
    """Enhance ``jobs`` into ``outdir`` with ``enhancer``.

    Parameters
    ----------
    enhancer : Enhancer
        Used from this thread only.
    jobs : iterable of Job
        In the order to process them.
    outdir : str
        Resolved OUTDIR.
    batch_size : int
        Images per ``enhancer.enhance`` call (equal shape, dtype and bit depth).
    workers : int
        I/O threads.
    parameters : dict, optional
        For derived DICOMs' DerivationDescription.
    on_start, on_result : callables
        See the module docstring. Every job started gets exactly one result, unless the run is
        interrupted (KeyboardInterrupt is re-raised after the threads stop; the writes that were
        running finish and are reported first).
    """
    batch_size, workers = max(1, int(batch_size)), max(1, int(workers))
    window = 2 * workers + batch_size
    hold = 2 * batch_size + workers
    pool = ThreadPoolExecutor(workers, thread_name_prefix="xvert-io")
    reads: deque[Future] = deque()
    writes: deque[Future] = deque()
    buckets: dict[tuple, list[Loaded]] = {}
    pending = iter(jobs)

    def refill() -> None:
        while len(reads) < window:
            job = next(pending, None)
            if job is None:
                return
            on_start(job)
            reads.append(pool.submit(load, job))

    def report_writes(limit: int) -> None:
        while writes and (writes[0].done() or len(writes) > limit):
            result = writes[0].result()  # may wait for the write: interruptible
            with deferred_interrupts():  # off the queue and into the manifest together
                writes.popleft()
                on_result(result)

    def run_group(items: list[Loaded]) -> None:
        for item, pixels in zip(items, enhance_group(enhancer, items)):
            writes.append(pool.submit(save, item, pixels, outdir, parameters))
        report_writes(window)

    try:
        refill()
        held = 0
        while reads:
            item = reads.popleft().result()
            refill()
            report_writes(window)
            if isinstance(item, Result):
                on_result(item)
                continue
            key = group_key(item)
            buckets.setdefault(key, []).append(item)
            held += 1
            if len(buckets[key]) >= batch_size:
                group = buckets.pop(key)
                held -= len(group)
                run_group(group)
            while held > hold:
                group = buckets.pop(next(iter(buckets)))
                held -= len(group)
                run_group(group)
        for key in list(buckets):
            run_group(buckets.pop(key))
        report_writes(0)
    except KeyboardInterrupt:
        # Writes already running finish under their final names: report them, so that their
        # manifest rows say done and a rerun does not enhance them again.
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in writes:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                on_result(fut.result())
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
