"""The background work of `ionflux serve`, in a child process: `serve` starts an `ionflux worker`, watches
it, restarts it if it dies, and stops it when the server stops.

Why: in one process, the outbox relay and the event consumers share the event loop with the requests,
and every relay batch and consumer transaction is a stretch of CPU that requests queue behind. Measured
with one webhook sender on PostgreSQL (bench/webhooks.py): p99 1.43x the bare baseline's with the
work in the server's process, 1.10x with it in a child process on the same core at a lower CPU
priority. The worker runs at nice 19 (`IONFLUX_WORKER_NICE`): when both want the CPU the kernel gives it
to the requests, as the spec asks (answer fast, heavy work after); the relay catches up when they
pause, and nothing is lost meanwhile (the outbox holds it). At nice 5 it took more of a shared core:
0.87x the baseline's webhooks/s against 1.03x at 19. A machine with a second core runs the two in
parallel whatever their priority.

Only on PostgreSQL, which takes concurrent writers: with SQLite (one writer for the whole file) the
two processes would queue for the write lock — measured 2.3x fewer webhooks/s at 16 senders — so
there the work stays in the server's process (`background_in_process`).

The child never outlives the server: it asks the kernel for SIGTERM when its parent dies (Linux
`PR_SET_PDEATHSIG`) and also checks its parent every second (`parent_alive`), so a SIGKILLed server
leaves no orphan relaying behind the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("ionflux.worker")
_PR_SET_PDEATHSIG = 1


def background_in_process(database_url: str) -> bool:
    """Whether `serve` keeps the relay and consumers in its own process (SQLite) or in a child."""
    return database_url.startswith("sqlite")


class WorkerProcess:
    """Runs `ionflux worker` as a child of this process, restarting it (with backoff) if it exits."""

    def __init__(self, *, only: list[str], nice: int, grace_seconds: float = 20.0,
                 restart_seconds: float = 1.0, max_restart_seconds: float = 30.0) -> None:
        self.argv = [sys.executable, "-m", "ionflux.cli", "worker", "--parent-pid", str(os.getpid()),
                     "--nice", str(nice)]
        if only:
            self.argv += ["--only", ",".join(only)]
        self.grace_seconds = grace_seconds
        self.restart_seconds = restart_seconds
        self.max_restart_seconds = max_restart_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        # Restarts are spawned by the watcher, which lives as long as the server: PR_SET_PDEATHSIG fires
        # when the *thread* that forked the child exits (the first spawn is the main thread's).
        self._watcher = threading.Thread(target=self._watch, name="ionflux-worker-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.proc = subprocess.Popen(self.argv)  # noqa: S603 - our own command; logs go where the server's go
            log.info("worker process started", extra={"pid": self.proc.pid})

    def _watch(self) -> None:
        delay = self.restart_seconds
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                delay = self.restart_seconds  # it had been running fine: a fresh failure
            log.error("worker process exited with %s; restarting in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(self.max_restart_seconds, delay * 2)
            self.restarts += 1
            self._spawn()

    def stop(self) -> None:
        """SIGTERM (the worker finishes its batch and exits), then SIGKILL after the grace period."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            log.warning("worker process did not stop in %.0f s; killed", self.grace_seconds)
            proc.kill()
            proc.wait()


def die_with_parent(parent_pid: int) -> None:
    """In the child: get SIGTERM when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if not parent_alive(parent_pid):
        sys.exit(0)


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid
