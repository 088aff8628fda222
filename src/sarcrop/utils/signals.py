"""Ctrl-C where a command starts worker processes (an experiment's, a Dask cluster's)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Ctrl-C ignored while the block starts processes, which keep ignoring it (an ignored
    signal stays ignored across ``exec``, and Python then installs no handler of its own): the
    command's own process alone answers it and stops them, and no worker prints a traceback.
    Only the main thread can set a signal handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
