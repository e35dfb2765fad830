"""SIGTERM stops a sync the way Ctrl-C does: the run is recorded, then one line on stderr and exit code 143."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

from usageledger.cli._app import fail

EXIT_SIGTERM: Final = 128 + signal.SIGTERM
"""143: the shell's code for a process ended by SIGTERM, kept so callers (systemd, cron, CI) see what happened."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises SIGINT: asyncio cancels the run, which records its streams and itself as
    ``interrupted`` (finished streams keep their state), and the block ends with one line and exit code 143.

    A process started with SIGINT ignored (``cmd &`` in a script, which then stops it with ``kill``) gets Python's
    SIGINT handler for the block, else the relayed signal would be ignored too and SIGTERM would not stop the run.
    Outside the main thread (signals cannot be handled there) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        if received:
            raise fail("interrupted by SIGTERM", EXIT_SIGTERM) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
