"""`ionflux shopify …`: run a backfill or reconciliation of one connection in this process, with a
progress bar. It shares the database with any running server; the run's lease keeps them apart, and a
run that was interrupted resumes from its checkpoint."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Shopify integration")


@app.command("sync")
def sync_command(
    connection_id: Annotated[str, typer.Argument(help="The Shopify connection's id")],
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The workspace that owns the connection")],
    kind: Annotated[str, typer.Option(help="backfill or reconcile")] = "backfill",
) -> None:
    """Pull the shop's products and orders (cursor pages, resumable) into the local tables."""
    from ionflux.core.errors import IonfluxError
    from ionflux.core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        outcome = asyncio.run(_sync(settings, workspace, connection_id, kind))
    except (IonfluxError, SettingsError) as exc:
        typer.echo(f"ionflux: {getattr(exc, 'message', exc)}", err=True)
        raise typer.Exit(2) from None
    typer.echo(outcome)


async def _sync(settings: object, workspace: str, connection_id: str, kind: str) -> str:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ionflux.core.db import Database
    from ionflux.core.platform import Platform
    from ionflux.core.settings import Settings
    from ionflux.integrations.shopify.models import ShopifySyncRun
    from ionflux.integrations.shopify.service import ShopifyService

    assert isinstance(settings, Settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Database(settings.effective_database_url).upgrade()
    platform = Platform.from_settings(settings)
    service = ShopifyService(platform)
    try:
        await platform.vault.load_platform_credentials(settings)
        run = await service.sync.begin(workspace, connection_id, kind)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as bar:
            task = bar.add_task(f"{kind} {connection_id}")

            def show(state: ShopifySyncRun) -> None:
                bar.update(task, description=f"{kind}: {state.stage} · {state.products} products · "
                                             f"{state.orders} orders · {state.pages} pages · {state.published} events")

            run = await service.sync.run(workspace, run.id, progress=show)
        return (f"{run.kind} {run.status}: {run.products} products, {run.orders} orders, {run.pages} pages, "
                f"{run.published} events published")
    finally:
        await service.stop()
        await platform.db.dispose()
