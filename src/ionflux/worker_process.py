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

On SQLite too, where the two processes share the database's one write lock: the server's webhook
inbox takes it without blocking its loop (see `webhooks/stores.py`), and the worker keeps its write
transactions short (`IONFLUX_WORKER_SQLITE_BATCH` events each), since at nice 19 a long one holds the
lock across the moments the server leaves it the CPU. Measured with one sender (bench/webhooks.py,
SQLite): in the server's process 0.71x the baseline's webhooks/s and a p99 1.99x the baseline's; in the
child with 50-event transactions 0.84x / 1.78x, with 10-event ones 0.92x / 1.11x. PostgreSQL wakes the
worker's relay with NOTIFY; SQLite has nothing like it, so the server writes a byte to the worker's
stdin after its commits (`wake`).

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
from typing import Any

log = logging.getLogger("ionflux.worker")
_PR_SET_PDEATHSIG = 1


class WorkerProcess:
    """Runs `ionflux worker` as a child of this process, restarting it (with backoff) if it exits."""

    def __init__(self, *, only: list[str], nice: int, wake_pipe: bool = False, grace_seconds: float = 20.0,
                 restart_seconds: float = 1.0, max_restart_seconds: float = 30.0) -> None:
        self.argv = [sys.executable, "-m", "ionflux.cli", "worker", "--parent-pid", str(os.getpid()),
                     "--nice", str(nice)]
        if only:
            self.argv += ["--only", ",".join(only)]
        self.wake_pipe = wake_pipe  # the worker's relay is woken through its stdin (`wake`)
        if wake_pipe:
            self.argv.append("--wake-stdin")
        self.grace_seconds = grace_seconds
        self.restart_seconds = restart_seconds
        self.max_restart_seconds = max_restart_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_exit: int | None = None  # the code the last worker exited with (negative: killed by a signal)
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
            # Our own command; its logs go where the server's go.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE if self.wake_pipe else None)  # noqa: S603
            if self.proc.stdin is not None:
                os.set_blocking(self.proc.stdin.fileno(), False)
            log.info("worker process started", extra={"pid": self.proc.pid})

    def wake(self) -> None:
        """Tell the worker's relay that outbox rows were committed (a byte on its stdin; never blocks: with
        the pipe full, the worker has wake-ups to read already)."""
        with self._lock:  # the watcher closes a dead worker's pipe under it: never write to a reused fd
            pipe = self.proc.stdin if self.proc is not None else None
            if pipe is None or pipe.closed:
                return
            with contextlib.suppress(OSError):  # full, or the worker is gone (the watcher restarts it)
                os.write(pipe.fileno(), b".")

    def _watch(self) -> None:
        delay = self.restart_seconds
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            with self._lock:
                if proc.stdin is not None:
                    proc.stdin.close()
            if self._stopping.is_set():
                return
            self.last_exit = code
            if time.monotonic() - started > 60:
                delay = self.restart_seconds  # it had been running fine: a fresh failure
            log.error("worker process exited with %s; restarting in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(self.max_restart_seconds, delay * 2)
            self.restarts += 1
            self._spawn()

    def status(self) -> dict[str, Any]:
        """For /healthz: is the worker running, and how often has it been restarted."""
        proc = self.proc
        if self._stopping.is_set():
            state = "stopped"
        else:
            state = "running" if proc is not None and proc.poll() is None else "restarting"
        return {"mode": "child process", "state": state, "pid": proc.pid if proc is not None else None,
                "restarts": self.restarts, "last_exit_code": self.last_exit}

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
