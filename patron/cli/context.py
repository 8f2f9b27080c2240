"""Shared glue for command modules: the settings and the config file of this invocation."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.config import Settings, load_settings


def config_path(ctx: typer.Context) -> Path | None:
    """The root command's --config (or $PATRON_CONFIG); None for the default."""
    return (ctx.find_root().obj or {}).get("config")


def settings_from(ctx: typer.Context) -> Settings:
    """Settings for this invocation (the root command's --config, $PATRON_CONFIG, $PATRON_HOME)."""
    return load_settings(config_path(ctx))
