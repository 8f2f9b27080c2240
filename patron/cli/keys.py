"""Commands `patron keys create|list|revoke`: the service's API keys (the file is re-read by running servers)."""

from __future__ import annotations

import typer

from patron.cli.context import settings_from
from serving.access.api_keys import SCOPES, create_key, read_keys, revoke_key

keys_app = typer.Typer(
    name="keys", no_args_is_help=True, help="API keys with scopes (storefront, crm, admin) for the service."
)


@keys_app.command("create")
def create_command(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Who uses the key, e.g. storefront-web (unique)."),
    scopes: str = typer.Option(..., "--scopes", help=f"Comma-separated, from: {','.join(SCOPES)}."),
    rate: float | None = typer.Option(None, "--rate", help="Requests/s for this key (default: auth.rate_per_s)."),
) -> None:
    """Create a key and print it once: only its hash is stored."""
    settings = settings_from(ctx)
    try:
        key = create_key(settings.api_keys_file, name, scopes, rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"created API key {name!r} in {settings.api_keys_file}; it is shown only now:", err=True)
    typer.echo(key)


@keys_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Names, scopes, rates and creation dates of the keys (never the keys themselves)."""
    settings = settings_from(ctx)
    try:
        keys = read_keys(settings.api_keys_file)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not keys:
        typer.echo(f"no API keys in {settings.api_keys_file}: every request but health gets a 401")
    for k in keys:
        rate = f"{k.rate_per_s:g}/s" if k.rate_per_s else f"{settings.auth.rate_per_s:g}/s (default)"
        typer.echo(f"{k.name}\t{','.join(k.scopes)}\t{rate}\t{k.created_at}")


@keys_app.command("revoke")
def revoke_command(ctx: typer.Context, name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Remove a key; running servers refuse it within auth.reload_check_s seconds."""
    settings = settings_from(ctx)
    try:
        revoked = revoke_key(settings.api_keys_file, name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not revoked:
        raise typer.BadParameter(f"name: no key named {name!r} in {settings.api_keys_file}")
    typer.echo(f"revoked API key {name!r}")
