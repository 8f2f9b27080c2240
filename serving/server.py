"""Run the BentoML server for `serving.service:Patron` as a child process with Patron's config and workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from patron.config import DEFAULT_CONFIG, REPO_ROOT, Settings


def bentoml_options(settings: Settings) -> dict:
    """`@bentoml.service` options from the config: access log and metrics (BentoML 1.4 takes them per service, over
    any `api_server.*` setting)."""
    return {
        "logging": {"access": {"enabled": settings.serving.access_log}},
        "metrics": {"enabled": settings.serving.metrics},
    }


def bentoml_config(settings: Settings) -> dict:
    """The Patron service's BentoML config (`services.patron.*`): workers and request timeout besides
    `bentoml_options`; the server gets it from the launcher, the service reads no settings at import."""
    return {
        "services": {
            "patron": {
                "workers": settings.serving.workers,
                "traffic": {"timeout": settings.serving.request_timeout_s},
                **bentoml_options(settings),
            }
        }
    }


def _merged(base: dict, over: dict) -> dict:
    """`base` with `over` merged into it, nested dicts key by key."""
    return {
        **base,
        **{
            k: _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in over.items()
        },
    }


def bentoml_overrides(services: list[str], **options: bool) -> str:
    """A BENTOML_CONFIG_OPTIONS value setting e.g. `logging.access.enabled=false` for each named service."""
    return " ".join(
        f"services.{name}.{key}={str(value).lower()}" for name in services for key, value in options.items()
    )


def server_command(settings: Settings, port: int) -> list[str]:
    """The `bentoml serve` command line for the Patron service."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Patron",
        "--working-dir",
        str(REPO_ROOT),
        "--host",
        settings.serving.host,
        "--port",
        str(port),
    ]


def server_env(settings: Settings, config: Path | None = None) -> dict[str, str]:
    """Environment for the server: the same config and workspace, the service's BentoML config, BentoML's home inside
    the workspace."""
    # The config names the MLflow store; URIs left in the environment by an earlier in-process run must not win.
    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"}}
    env["PATRON_CONFIG"] = str(Path(config or env.get("PATRON_CONFIG") or DEFAULT_CONFIG).resolve())
    env["PATRON_HOME"] = str(settings.workspace)
    # BentoML's JSON config overrides; BENTOML_CONFIG_OPTIONS (e.g. `patron bench serve`'s) still goes over them.
    given = json.loads(env.get("BENTOML_CONFIG_OVERRIDES") or "{}")
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(_merged(bentoml_config(settings), given))
    env.setdefault("BENTOML_HOME", str(settings.workspace / "bentoml"))
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def start_server(
    settings: Settings, port: int | None = None, config: Path | None = None, log: IO | None = None
) -> subprocess.Popen:
    """Start the server in the background (output to `log`, else inherited); the caller stops it."""
    return subprocess.Popen(
        server_command(settings, port or settings.serving.port),
        env=server_env(settings, config),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )


def serve_forever(settings: Settings, port: int | None = None, config: Path | None = None) -> int:
    """Run the server in the foreground until it exits, Ctrl-C or SIGTERM (passed on); returns its exit status."""
    proc = start_server(settings, port, config)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_server(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a server started by start_server: terminate, then kill if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
