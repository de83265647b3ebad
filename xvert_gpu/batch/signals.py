"""How a batch run meets SIGINT (Ctrl-C) and SIGTERM.

:func:`sigterm_interrupts` makes SIGTERM (``kill``, systemd, Slurm, Kubernetes) stop a run the
way Ctrl-C does, by raising :class:`~xvert_gpu.batch.errors.Terminated` (a KeyboardInterrupt)
in the main thread.

:func:`deferred_interrupts` holds both signals back over the few statements that take a
finished file off the executor's queue and record it in the manifest: an interrupt landing
between the two would leave a written output recorded as 'running', which a rerun redoes.
Python runs signal handlers in the main thread only, whichever thread the signal reached, so
swapping the handlers there is enough (a signal mask would have to be set in every thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from .errors import Terminated

__all__ = ["sigterm_interrupts", "deferred_interrupts", "interrupt_signal"]


def interrupt_signal(exc: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: SIGTERM for :class:`Terminated`, else SIGINT (Ctrl-C).
    The exit status is 128 plus it."""
    return int(getattr(exc, "signum", signal.SIGINT))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While in the block, SIGTERM raises :class:`Terminated` in the main thread (the run stops
    as on Ctrl-C); the default action is back afterwards.

    Installed only in the main thread (the only one Python runs signal handlers in, and
    ``signal.signal`` raises elsewhere) and only over the default action: an ignored SIGTERM
    or an embedding program's own handler is left as it is. The handler acts once and then
    ignores SIGTERM until the block ends, so that a second one (some tools send several) does
    not cut short the bookkeeping the first one started; SIGKILL still ends the process.
    """
    if not _main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"signal {signum} (SIGTERM)")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive in the block take effect as it ends.

    Meant for a few statements that must run together (no waiting inside: an interrupt
    waits as long as the block). A held signal is then handed to the handler that was in
    place, so Ctrl-C raises KeyboardInterrupt and the run's SIGTERM raises Terminated just
    after the block; a default action is carried out by sending the signal again. Outside
    the main thread, where no handler can be set, the block runs as it is.
    """
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None or handler == signal.SIG_IGN:  # None: set outside Python
            continue
        previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            sig = held[0]
            handler = previous[sig]
            if callable(handler):
                handler(sig, None)  # raises here, as it would have in the block
            else:
                os.kill(os.getpid(), sig)  # the default action, now
