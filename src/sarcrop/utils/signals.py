"""Ctrl-C and SIGTERM: worker processes that leave them to the command (an experiment's, a
Dask cluster's), and reads still pending when the command ends."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def signal_handler(signum: int, handler: Any = None) -> Iterator[None]:
    """``handler`` for ``signum`` while the block runs (left as it is with None), and the one
    before restored after it, whatever the block set meanwhile. Only the main thread can set
    a signal handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signum)
    if handler is not None:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, before)


def ctrl_c_ignored() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C ignored while the block starts processes, which keep ignoring it (an ignored
    signal stays ignored across ``exec``, and Python then installs no handler of its own): the
    command's own process alone answers it and stops them, and no worker prints a traceback."""
    return signal_handler(signal.SIGINT, signal.SIG_IGN)


def settle_pending_reads(timeout: float = 2.0) -> None:
    """Cancel the store reads still running in Zarr's IO thread when a command is interrupted
    in the middle of one, and wait for them to end: at exit Zarr closes its event loop, and
    Python would print a "Task was destroyed but it is pending!" for each read left running."""
    sync = sys.modules.get("zarr.core.sync")  # only where the command read a store
    running = getattr(sync, "loop", [None])[0]
    if running is None or not running.is_running():
        return

    async def cancel_others() -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    future = asyncio.run_coroutine_threadsafe(cancel_others(), running)
    with contextlib.suppress(Exception):
        future.result(timeout)
