"""Shared glue for command modules: settings from the CLI context."""

from __future__ import annotations

import typer

from patron.config import Settings, load_settings


def settings_from(ctx: typer.Context) -> Settings:
    """Settings for this invocation (the root command's --config, $PATRON_CONFIG, $PATRON_HOME)."""
    root = ctx.find_root()
    config = (root.obj or {}).get("config") if root.obj else None
    return load_settings(config)
