"""Enhancing on a Dask cluster (``--dask ADDRESS`` or ``--dask local``).

* ``local``: a :class:`distributed.LocalCluster` on the loopback interface (127.0.0.1), one
  single-threaded worker *process* per ``--workers``; with ``dask-cuda`` installed and a GPU
  visible (and ``--device`` not ``cpu``), a ``dask_cuda.LocalCUDACluster`` instead, one worker
  per GPU. Any other value is the address of a running scheduler (``tcp://host:8786``).
* Each task is one file: the worker hashes and reads it, enhances it (batch of one), writes
  the output with the same atomic temp-file-and-rename, and sends back a small
  :class:`~xvert_gpu.batch.work.Result`. Inputs, OUTDIR and the model file must therefore be
  reachable under the same paths on every worker (a shared file system).
* Every worker process loads the Enhancer once and keeps it (a per-process cache keyed by
  model, device and threads).
* Only the client writes the manifest. A task whose worker dies is resubmitted up to
  ``--retries`` times (``client.submit(..., retries=)``); a file that fails for a reason of its
  own is *returned* as failed, not raised, so it is not retried in vain.
* Tasks are submitted through a sliding window (a few per worker thread), so an archive of a
  million files does not put a million futures on the scheduler at once.
* ``--threads`` sets each worker's torch and Numba threads; by default they follow the
  worker's own thread count (1 in a ``local`` cluster: one process per core).
* Outputs are bit-for-bit those of a local run with ``--batch-size 1`` and the same torch
  thread count (``--threads`` equal on both sides; with ``--dask local`` and no
  ``--threads`` that is a local run with ``--threads 1``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Iterable

from .errors import UsageError
from .paths import Job
from .signals import deferred_interrupts
from .threads import limit_threads
from .work import Result, derivation, enhance_group, load, save

__all__ = ["DaskRunner", "process_file", "worker_identity"]

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()


def _enhancer(model: str, device: str, threads: int | None) -> Any:
    """This worker process's Enhancer for (model, device, threads), loaded once."""
    key = (model, device, threads)
    with _CACHE_LOCK:
        # Numba's count is per calling thread: set it on every task. Default: the worker's
        # thread count, so that N single-threaded workers do not run N x cores threads.
        limit_threads(threads or _worker_threads())
        if key not in _CACHE:
            from ..enhancer import Enhancer

            _CACHE[key] = Enhancer.from_pretrained(model, device=device, batch_size=1)
        return _CACHE[key]


def _worker_threads() -> int | None:
    try:
        from distributed import get_worker
        w = get_worker()
    except (ImportError, ValueError):
        return None
    state = getattr(w, "state", w)
    return getattr(state, "nthreads", None) or getattr(w, "nthreads", None)


def _address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        from .work import worker_name
        return worker_name()


def worker_identity(model: str, device: str, threads: int | None) -> str:
    """Task: load (or reuse) the worker's Enhancer and return its identity."""
    return _enhancer(model, device, threads).identity


def process_file(job: Job, outdir: str, model: str, device: str, threads: int | None) -> Result:
    """Task: hash, read, enhance and write one file; returns its :class:`Result`."""
    enh = _enhancer(model, device, threads)
    item = load(job)
    if not isinstance(item, Result):
        [pixels] = enhance_group(enh, [item])
        item = save(item, pixels, outdir, derivation(enh))
    item.model = enh.identity
    item.fields["worker"] = _address()
    return item


def _local_cluster(workers: int, device: str) -> Any:
    from .. import backends

    if device != "cpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            LocalCUDACluster = None
        if LocalCUDACluster is not None and backends.cuda_available():
            return LocalCUDACluster(host="127.0.0.1", dashboard_address=None)
    if device == "cuda" and not backends.cuda_available():
        raise UsageError("--device cuda: no CUDA GPU visible to CuPy on this machine")
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)


class DaskRunner:
    """A connection to a Dask cluster that enhances files (a context manager).

    Parameters
    ----------
    address : str
        ``"local"`` or a scheduler address.
    model, device, threads
        As for the local run; ``model`` is made absolute (workers open it by path).
    workers : int
        Worker processes of a ``local`` cluster.
    retries : int
        Resubmissions of a task whose worker died.

    Attributes
    ----------
    identity : str
        The model identity a worker reports (asked once, before any file is submitted).
    """

    def __init__(self, address: str, model: str, device: str, threads: int | None,
                 workers: int, retries: int = 2):
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--dask needs dask.distributed: pip install 'xvert_gpu[dist]'") \
                from None
        self.model = model if model == "default" else os.path.abspath(model)
        self.device, self.threads, self.retries = device, threads, int(retries)
        self.cluster = None
        try:
            if address == "local":
                self.cluster = _local_cluster(workers, device)
                self.client = Client(self.cluster)
            else:
                self.client = Client(address, timeout="30s")
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise UsageError(f"cannot start or reach the Dask cluster {address!r}: "
                             f"{type(exc).__name__}: {exc}") from None
        try:
            self.identity = self.client.submit(worker_identity, self.model, device, threads,
                                               pure=False, retries=self.retries).result()
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise UsageError(f"the Dask workers cannot load model {model!r}: "
                             f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> "DaskRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, jobs: Iterable[Job], outdir: str,
            on_start: Callable[[Job], None] = lambda job: None,
            on_result: Callable[[Result], None] = lambda result: None) -> None:
        """Enhance ``jobs``; ``on_start``/``on_result`` are called in this thread."""
        from distributed import as_completed

        threads = sum(self.client.nthreads().values()) or 1
        window = max(8, 4 * threads)
        pending = iter(jobs)
        running: dict[str, tuple[Job, Any]] = {}  # by task key: the job and its future
        done = as_completed()

        def submit_next() -> bool:
            job = next(pending, None)
            if job is None:
                return False
            on_start(job)
            fut = self.client.submit(process_file, job, outdir, self.model, self.device,
                                     self.threads, pure=False, retries=self.retries)
            running[fut.key] = (job, fut)
            done.add(fut)
            return True

        def outcome(fut) -> Result:
            job = running[fut.key][0]
            try:
                return fut.result()
            except Exception as exc:  # noqa: BLE001 - worker lost beyond the retries, ...
                return Result(job.key, job.source, "failed",
                              f"Dask task failed (after up to {self.retries} retries): "
                              f"{type(exc).__name__}: {exc}")

        for _ in range(window):
            if not submit_next():
                break
        try:
            for fut in done:
                result = outcome(fut)  # may wait on the scheduler: interruptible
                with deferred_interrupts():  # off the running set and into the manifest together
                    running.pop(fut.key)
                    on_result(result)
                fut.release()
                submit_next()
        except KeyboardInterrupt:
            # Tasks that finished on a worker but were not collected yet have written their
            # outputs: report them, so that a rerun does not enhance them again.
            for key, (job, fut) in list(running.items()):
                if fut.status == "finished":
                    result = outcome(fut)
                    running.pop(key)
                    on_result(result)
            raise
        finally:
            for fut in list(done.futures) if hasattr(done, "futures") else []:
                fut.cancel()
