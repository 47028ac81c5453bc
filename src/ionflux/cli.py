"""The `ionflux` command: serve, worker, db upgrade, workspace create, vault rotate, config show, demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from ionflux.core.settings import Settings, SettingsError, load_settings
from ionflux.integrations.shopify.cli import app as shopify_app

log = logging.getLogger("ionflux.worker")
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="IONFLUX integration layer")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
workspace_app = typer.Typer(no_args_is_help=True, help="Workspaces and API tokens")
vault_app = typer.Typer(no_args_is_help=True, help="Credential vault")
config_app = typer.Typer(no_args_is_help=True, help="Configuration")
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
app.add_typer(vault_app, name="vault")
app.add_typer(config_app, name="config")
app.add_typer(shopify_app, name="shopify")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"ionflux: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


def _prepare(settings: Settings) -> None:
    from ionflux.core.db import Database
    from ionflux.core.observability import configure_logging

    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Database(settings.effective_database_url).upgrade()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 8080,
    only: Annotated[str, typer.Option(help="Comma-separated services to serve (default: all)")] = "",
    worker: Annotated[bool, typer.Option(help="Also run the outbox relay, consumers and schedulers")] = True,
    inline_worker: Annotated[bool, typer.Option(
        help="Run them in this process (default: in a child `ionflux worker` process at a lower CPU "
             "priority, which `serve` starts, restarts and stops)")] = False,
) -> None:
    """Run the HTTP API (migrates the database first)."""
    import uvicorn

    from ionflux.app import create_app
    from ionflux.core.platform import Platform
    from ionflux.services import resolve_services
    from ionflux.worker_process import WorkerProcess

    settings = _settings()
    try:
        services = resolve_services(only.split(",") if only else None)
    except ValueError as exc:
        typer.echo(f"ionflux: --only: {exc}", err=True)
        raise typer.Exit(2) from None
    _prepare(settings)
    in_process = worker and inline_worker
    sqlite = settings.effective_database_url.startswith("sqlite")
    child = WorkerProcess(only=services if only else [], nice=settings.worker_nice, wake_pipe=sqlite) \
        if worker and not in_process else None
    platform = Platform.from_settings(settings)
    if child is not None and sqlite:
        platform.bus.forward_wakes(child.wake)  # PostgreSQL's worker is woken by NOTIFY instead
    mode = "in this process" if in_process else "elsewhere (serve --no-worker)"
    platform.worker_status = child.status if child is not None else lambda: {"mode": mode}

    fastapi_app = create_app(platform, only=services, run_worker=in_process)
    if child is not None:
        child.start()
    try:
        # No proxy-header rewriting: IONFLUX builds no URL from a request and logs no client address (public
        # URLs come from settings), so it would only cost every request a scope rewrite. No `server` banner.
        uvicorn.run(fastapi_app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False,
                    server_header=False)
    finally:
        if child is not None:
            child.stop()


@app.command("worker")
def worker_command(
    only: Annotated[str, typer.Option(help="Comma-separated services whose consumers to run (default: all)")] = "",
    parent_pid: Annotated[int, typer.Option(hidden=True, help="exit when this process (the server) is gone")] = 0,
    nice: Annotated[int, typer.Option(hidden=True, help="lower this process's CPU priority by this much")] = 0,
    wake_stdin: Annotated[bool, typer.Option(hidden=True, help="wake the relay on every byte read from stdin")] = False,
) -> None:
    """Run the outbox relay, event consumers and schedulers without HTTP."""
    from ionflux.core.platform import Platform
    from ionflux.core.waiting import wake_or_timeout
    from ionflux.services import build_services, platform_running, resolve_services
    from ionflux.worker_process import die_with_parent, parent_alive

    if parent_pid:
        die_with_parent(parent_pid)
    if nice:
        os.nice(nice)
    settings = _settings()
    try:
        names = resolve_services(only.split(",") if only else None)
    except ValueError as exc:
        typer.echo(f"ionflux: --only: {exc}", err=True)
        raise typer.Exit(2) from None
    _prepare(settings)

    if settings.effective_database_url.startswith("sqlite"):
        # Short write transactions: the server's webhook inbox waits for the same write lock.
        batch = settings.worker_sqlite_batch
        settings = settings.model_copy(update={"relay_batch_size": batch, "bus_consumer_batch": batch})

    async def main() -> None:
        platform = Platform.from_settings(settings)
        services = build_services(platform, names)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if wake_stdin:
            _wake_on_stdin(loop, platform.bus.relay.wake)
        async with platform_running(platform, services):
            typer.echo("ionflux worker running; Ctrl-C to stop", err=True)
            while not stop.is_set():
                await wake_or_timeout(stop, 1.0)
                if parent_pid and not parent_alive(parent_pid):
                    log.warning("the server process is gone; the worker stops")
                    break

    _run_loop(main())


def _wake_on_stdin(loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
    """The server's wake-ups after its commits (SQLite), as bytes on stdin; at its end, the reader goes."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            wake()
        else:
            loop.remove_reader(fd)  # the server is gone or restarting us: the parent check ends this process

    loop.add_reader(fd, readable)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process's loop on uvloop (as `serve` does through uvicorn) where it is installed:
    the relay and consumers spend a good part of their CPU in the event loop's socket handling."""
    try:
        import uvloop
    except ImportError:  # Windows
        asyncio.run(main)
        return
    uvloop.run(main)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "heads") -> None:
    """Apply database migrations."""
    from ionflux.core.db import Database

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Database(settings.effective_database_url).upgrade(revision)
    typer.echo(f"database at {revision}")


@workspace_app.command("create")
def workspace_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a workspace and print its id and a workspace-scoped API token (shown once)."""
    settings = _settings()
    _prepare(settings)
    created = asyncio.run(_create_workspace(settings, name))
    if as_json:
        typer.echo(json.dumps({"id": created[0], "name": name, "token": created[1]}))
    else:
        typer.echo(f"workspace_id: {created[0]}\ntoken:        {created[1]}\n(the token is shown only once)")


async def _create_workspace(settings: Settings, name: str) -> tuple[str, str]:
    from ionflux.core.db import Database
    from ionflux.core.workspaces import WorkspaceDirectory

    db = Database(settings.effective_database_url)
    try:
        created = await WorkspaceDirectory(db).create(name)
    except ValueError as exc:
        typer.echo(f"ionflux: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        await db.dispose()
    return created.id, created.token


@vault_app.command("rotate")
def vault_rotate() -> None:
    """Add a new master key and re-wrap every credential's data key under it (no downtime)."""
    from ionflux.core.db import Database
    from ionflux.core.vault import Vault

    settings = _settings()
    _prepare(settings)

    async def main() -> int:
        db = Database(settings.effective_database_url)
        try:
            return await Vault.from_settings(settings, db).rotate()
        finally:
            await db.dispose()

    count = asyncio.run(main())
    typer.echo(f"re-wrapped {count} credential(s) under the new master key")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (the core's, then each service's section), secrets masked."""
    from ionflux.services import service_settings

    shown = _settings().masked()
    try:
        sections = service_settings()
    except SettingsError as exc:
        typer.echo(f"ionflux: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    shown.update({section: settings.masked() for section, settings in sections.items()})
    typer.echo(json.dumps(shown, indent=2, default=str))


@app.command()
def sandbox(
    only: Annotated[str, typer.Option(help="Comma-separated simulators (default: all)")] = "",
    port_base: Annotated[int, typer.Option(help="First port; simulators take consecutive ports")] = 9100,
) -> None:
    """Start the provider simulators on loopback and print the settings that point IONFLUX at them."""
    from ionflux.sandbox.catalog import SIMULATORS
    from ionflux.sandbox.server import SimulatorServer

    names = [n.strip() for n in only.split(",") if n.strip()] or list(SIMULATORS)
    unknown = [n for n in names if n not in SIMULATORS]
    if unknown:
        typer.echo(f"ionflux: --only: unknown simulator(s) {', '.join(unknown)}; known: {', '.join(SIMULATORS)}",
                   err=True)
        raise typer.Exit(2)
    servers: list[SimulatorServer] = []
    try:
        for offset, name in enumerate(names):
            entry = SIMULATORS[name]
            server = SimulatorServer(entry.build(), name=name, port=port_base + offset).start()
            servers.append(server)
            typer.echo(f"{name:10} {server.base_url}   {entry.description}")
            for variable in entry.settings:
                typer.echo(f"           export {variable}={server.base_url}")
        typer.echo("simulators running; Ctrl-C to stop", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        for server in reversed(servers):
            server.stop()


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port IONFLUX listens on")] = 8080,
    once: Annotated[bool, typer.Option("--once", help="Exit after the summary instead of serving on")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Where the demo keeps its data (default: a new temp dir)")]
    = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file")] = None,
) -> None:
    """The whole flow on loopback: simulators, OAuth, backfill, agents, a webhook burst, and a summary."""
    from ionflux.demo import run_demo

    run_demo(port=port, once=once, data_dir=data_dir, summary_json=summary_json)


def main() -> None:
    """Entry point: an IONFLUX error (e.g. an unreadable master key) is one line, not a traceback."""
    from ionflux.core.errors import IonfluxError

    try:
        app()
    except IonfluxError as exc:
        typer.echo(f"ionflux: {exc.code}: {exc.message}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
