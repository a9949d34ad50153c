"""SIGTERM handled like Ctrl-C by every front end: `timeout`, CI runners and service managers
stop a process with SIGTERM, and a run stopped that way must clean up exactly as on Ctrl-C."""

from __future__ import annotations

import _thread
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


def _as_interrupt(_signum: int, _frame: Any) -> None:
    if callable(signal.getsignal(signal.SIGINT)):
        # the same path as a Ctrl-C: asyncio.run's own SIGINT handler cancels the main task,
        # so every `finally` (containers, snapshot, model server) runs before the exit
        _thread.interrupt_main(signal.SIGINT)
    else:  # SIGINT ignored (a background job): still stop
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_ctrl_c(handler: Callable[[int, Any], None] = _as_interrupt) -> Iterator[None]:
    """Within this block SIGTERM stops the process like Ctrl-C (main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals to whoever owns it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
