"""Run a simulator's ASGI app with uvicorn on a free loopback port, in-process.

    async with SimulatorServer(app) as sim:          # on the test's own event loop
        httpx.get(sim.base_url + "/...")
    with SimulatorServer(app) as sim:                # on a background thread with its own loop
        ...                                          # (the CLI and the demo run several this way)

Every app is wrapped in `FaultMiddleware`, so `sim.faults` scripts failures and `sim.requests` is the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ionflux.sandbox.faults import TRANSPORT_EXTENSION, FaultScript, RecordedRequest
from ionflux.sandbox.middleware import FaultMiddleware


class _TransportExposingH11(H11Protocol):
    """uvicorn's h11 protocol, putting the connection's transport in the scope so a fault can reset it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = self.transport
            await inner(scope, receive, send)

        self.app = app


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Embedded servers leave signals to the host process (pytest, the CLI).
        yield


class SimulatorServer:
    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str = "simulator",
        faults: FaultScript | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.faults = faults or FaultScript()
        self.app = FaultMiddleware(app, self.faults)
        self.host = host
        self._requested_port = port
        self.port = 0
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} simulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.faults.requests

    def _prepare(self) -> tuple[_EmbeddedServer, socket.socket]:
        if self._server is not None:
            raise RuntimeError(f"{self.name} simulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            http=_TransportExposingH11,
            lifespan="auto",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, round(self.shutdown_timeout / 2)),
        )
        self.faults.closing = False
        self._server = _EmbeddedServer(config)
        return self._server, sock

    def _port_answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    # -- on the caller's event loop ----------------------------------------------------------------
    async def start_async(self) -> SimulatorServer:
        server, sock = self._prepare()
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name=f"sandbox-{self.name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        while not server.started:
            if self._task.done():
                self._reset_state()
                self._task.result()
                raise RuntimeError(f"{self.name} simulator stopped during start-up")
            if loop.time() > deadline:
                await self.stop_async()
                raise TimeoutError(f"{self.name} simulator did not start in {self.startup_timeout}s")
            await asyncio.sleep(0.01)
        return self

    async def stop_async(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self.faults.closing = True
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.shutdown_timeout)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        finally:
            self._reset_state()

    async def __aenter__(self) -> SimulatorServer:
        return await self.start_async()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    # -- on a background thread with its own loop --------------------------------------------------
    def start(self) -> SimulatorServer:
        server, sock = self._prepare()

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported to start() and stop(); a thread has nowhere else to raise
                self._thread_error = exc

        self._thread_error = None
        self._thread = threading.Thread(target=run, name=f"sandbox-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not (server.started and self._port_answers()):
            if not self._thread.is_alive():
                self._reset_state()
                raise RuntimeError(f"{self.name} simulator stopped during start-up: {self._thread_error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} simulator did not start in {self.startup_timeout}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.faults.closing = True
        server.should_exit = True
        thread.join(self.shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.shutdown_timeout)
        self._reset_state()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _reset_state(self) -> None:
        self._server = None
        self._task = None
        self._thread = None
        self.port = 0
