"""Command `patron forget`: the right to be forgotten from the command line."""

from __future__ import annotations

import typer

from patron.cli.context import settings_from


def forget(ctx: typer.Context, customer_ids: list[str] = typer.Argument(..., help="Customer ids to erase.")) -> None:
    """Erase customers from the workspace tables, feature caches, batch outputs, the online store and the alerts log;
    the erasure log keeps a salted hash and the date, so no later ingest brings them back."""
    from serving.answers.erasure import erase_customers
    from serving.online.backend import open_store

    settings = settings_from(ctx)
    store = open_store(settings)
    try:
        report = erase_customers(settings, customer_ids, store)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        store.close()
    typer.echo(report.summary())
