"""Blocking calls on daemon threads, awaited from the event loop. Unlike `asyncio.to_thread`
(the default executor, joined by `asyncio.run` and at interpreter exit), a stopped run does
not wait for such a call to return: a sandbox call blocked on a container that is being
removed cannot hold the terminal after Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[..., T], *args: object, name: str = "mulligan-call") -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile: nobody waits for this result
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop has closed: the run is over

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
