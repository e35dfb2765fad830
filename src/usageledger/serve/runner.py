"""Run the dashboard in the foreground with uvicorn, optionally syncing the store every so often.

``--sync-every`` runs ``usageledger sync --quiet`` as a child process: the child reads its admin key from the
environment or the config exactly as a ``sync`` from cron would, so this process never handles the key, and what
the child says is only ever logged masked (:func:`usageledger._secrets.mask_keys`). SIGINT/SIGTERM stop the server
gracefully; a sync then running is sent SIGTERM (it records its run as interrupted) and waited for.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from starlette.types import ASGIApp

from usageledger._secrets import mask_keys
from usageledger._uvicorn import ReadyServer, bind, quiet_config, url_to_open

__all__ = ["PeriodicSync", "run", "sync_argv"]

logger = logging.getLogger("usageledger.serve")

STOP_GRACE: Final = 60.0
"""Seconds a sync child gets to record itself as interrupted after SIGTERM before it is killed."""


def sync_argv(config: Path | None, *, allow_many_requests: bool = False) -> list[str]:
    """The child's command line: this Python running ``usageledger sync --quiet`` (the store goes in its
    environment, so a PostgreSQL password never shows in a process list), with ``--allow-many-requests`` when
    ``serve`` was given it."""
    argv = [sys.executable, "-c", "from usageledger.cli import main; main()", "sync", "--quiet"]
    if config is not None:
        argv += ["--config", str(config)]
    if allow_many_requests:
        argv.append("--allow-many-requests")
    return argv


class PeriodicSync:
    """Runs a sync child now and then every ``interval`` seconds, one at a time, until :meth:`stop`."""

    def __init__(
        self,
        argv: Sequence[str],
        interval: float,
        *,
        store_url: str,
        say: Callable[[str], None],
    ) -> None:
        self.argv = list(argv)
        self.interval = interval
        self.store_url = store_url
        self.say = say
        self.runs = 0
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="usageledger-serve-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._run_once()
            self._stop.wait(self.interval)

    def _run_once(self) -> None:
        env = {**os.environ, "USAGELEDGER_STORE": self.store_url}
        child: subprocess.Popen[bytes] | None = None
        with self._lock:
            if self._stop.is_set():
                return
            try:
                child = self._child = subprocess.Popen(  # the argv is ours: this Python and fixed flags
                    self.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
            except OSError as exc:  # it killed the thread with a traceback, and no later interval synced
                failed = exc
        if child is None:  # said like a failed sync, and the next interval tries again
            self.runs += 1
            self.say(mask_keys(f"sync: {_not_started(self.argv[0], failed)}"))
            return
        _, err = child.communicate()
        with self._lock:
            self._child = None
        self.runs += 1
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        if child.returncode == 0:
            self.say("sync: ok")
        else:
            last = mask_keys(lines[-1]) if lines else "no message"
            self.say(f"sync: exit {child.returncode}: {last}")

    def stop(self) -> None:
        """No more syncs; a running one is asked to stop (SIGTERM) and waited for."""
        self._stop.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
        self._thread.join(timeout=STOP_GRACE + 5)


def _not_started(program: str, exc: OSError) -> str:
    """Why the sync child could not be launched, in one line naming its program and what to check."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = {
        FileNotFoundError: "check that it exists",
        PermissionError: "check that this user may execute it",
    }.get(type(exc))
    return f"could not start {program}: {reason}" + (f"; {hint}" if hint else "")


def run(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str, bool], None],
    periodic: PeriodicSync | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``on_ready`` hears, once listening, the URL to open (port 0 picks a free
    one; on every interface, the loopback URL) and whether it listens on every interface
    (:func:`~usageledger._uvicorn.url_to_open`)."""
    sock = bind(host, port, backlog=128)
    config = quiet_config(app, host, sock.getsockname()[1], lifespan="on")
    url, everywhere = url_to_open(sock, "/")

    def ready() -> None:
        on_ready(url, everywhere)
        if periodic is not None:
            periodic.start()

    try:
        ReadyServer(config, ready).run(sockets=[sock])
    finally:
        if periodic is not None:
            periodic.stop()
        sock.close()
