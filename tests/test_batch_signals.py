"""Interrupts during a batch run: no finished file goes unrecorded (``xvert_gpu.batch.signals``)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from batch_helpers import flat_png_jobs
from xvert_gpu.batch import distributed
from xvert_gpu.batch.errors import Terminated
from xvert_gpu.batch.paths import Job
from xvert_gpu.batch.pipeline import run_local
from xvert_gpu.batch.signals import deferred_interrupts, sigterm_interrupts
from xvert_gpu.batch.work import Result

posix = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix",
                           reason="POSIX signals")


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    # the handler runs at the next check between bytecodes; give it a few
    for _ in range(1000):
        pass


@posix
def test_an_interrupt_in_the_block_is_held_to_its_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            _signal_self(signal.SIGINT)
            done.append("recorded")  # without the deferral, never reached
    assert done == ["recorded"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@posix
def test_the_run_s_sigterm_is_held_and_then_raises_terminated():
    done = []
    with sigterm_interrupts():
        with pytest.raises(Terminated):
            with deferred_interrupts():
                _signal_self(signal.SIGTERM)
                done.append("recorded")
    assert done == ["recorded"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@posix
def test_no_signal_no_change_and_ignored_signals_stay_ignored():
    with deferred_interrupts():
        pass
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with deferred_interrupts():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            _signal_self(signal.SIGTERM)  # ignored, as before: nothing raised, nothing held
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_block_just_runs():
    box = []

    def target():
        with deferred_interrupts():
            box.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert box == [signal.default_int_handler]


class _Negate:
    def enhance(self, stack, bits=None):
        return (255 - stack).astype(stack.dtype)


@posix
def test_ctrl_c_while_a_finished_write_is_recorded_loses_no_record(tmp_path):
    """Ctrl-C that landed after the pipeline took a finished write off its queue, and before
    the manifest had it, left that output recorded as 'running': a rerun redid it."""
    jobs = flat_png_jobs(tmp_path / "in", 4)
    recorded = []

    def on_result(result):
        if not recorded:
            _signal_self(signal.SIGINT)  # arrives in the middle of the bookkeeping
        recorded.append((result.source, result.status))

    with pytest.raises(KeyboardInterrupt):
        run_local(_Negate(), jobs, str(tmp_path / "out"), batch_size=1, workers=1,
                  on_result=on_result)
    written = sorted(os.listdir(tmp_path / "out"))
    assert recorded[0] == (jobs[0].source, "done")
    # every output on disk is recorded as done, once
    assert sorted(os.path.basename(s) for s, _ in recorded) == written
    assert len(set(recorded)) == len(recorded)


class _FakeFuture:
    def __init__(self, key, result, status):
        self.key, self._result, self.status = key, result, status

    def result(self):
        return self._result

    def release(self):
        pass

    def cancel(self):
        self.status = "cancelled"


class _FakeClient:
    """Tasks 0 and 2 come back through as_completed; 1 finished on its worker but had not been
    collected when Ctrl-C came; 3 is still running."""

    def __init__(self):
        self.futures = []

    def nthreads(self):
        return {"w": 1}

    def submit(self, fn, job, *args, **kwargs):
        i = len(self.futures)
        status = "pending" if i == 3 else "finished"
        fut = _FakeFuture(f"task-{i}", Result(job.key, job.source, "done"), status)
        self.futures.append(fut)
        return fut


class _FakeAsCompleted:
    def __init__(self):
        self.futures = {}

    def add(self, fut):
        self.futures[fut] = 1

    def __iter__(self):
        order = [f for f in self.futures if f.key in ("task-0", "task-2")]
        for fut in order:
            del self.futures[fut]
            yield fut
        raise KeyboardInterrupt  # Ctrl-C while waiting for the next one


def test_dask_ctrl_c_reports_tasks_finished_on_workers(monkeypatch):
    """On Ctrl-C the Dask runner cancelled every task it had not collected, including ones that
    had already written their outputs on a worker: a rerun redid those."""
    dd = pytest.importorskip("distributed")
    monkeypatch.setattr(dd, "as_completed", _FakeAsCompleted)
    runner = distributed.DaskRunner.__new__(distributed.DaskRunner)
    runner.client, runner.model, runner.device, runner.threads, runner.retries = \
        _FakeClient(), "default", "cpu", 1, 0
    jobs = [Job(f"/in/{i}.png", f"/in/{i}.png", f"{i}.png", "png", "png") for i in range(4)]
    reported = []
    with pytest.raises(KeyboardInterrupt):
        runner.run(jobs, "/out", on_result=lambda r: reported.append(r.source))
    assert sorted(reported) == ["/in/0.png", "/in/1.png", "/in/2.png"]
    assert runner.client.futures[3].status == "cancelled"
