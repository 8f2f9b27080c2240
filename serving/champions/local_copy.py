"""The last good copy of each champion in the workspace, so the service can start while the registry is down."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from features.tables.store import write_json
from patron.config import Settings

MANIFEST = "current.json"  # per model: the version its copy holds and the artifacts in it
# Registry answers that mean "reachable, but there is nothing to serve": no fallback to a copy for those.
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def copies_dir(settings: Settings) -> Path:
    """Where the champions' local copies live: workspace/serving/champions/<model>/<version>/<artifact>."""
    return settings.workspace / "serving" / "champions"


def registry_unreachable(exc: BaseException) -> bool:
    """True when loading from the registry failed for another reason than a missing model or alias."""
    return not (isinstance(exc, MlflowException) and exc.error_code in _NOT_FOUND)


def save_copy(settings: Settings, model: str, version: str, artifacts: dict[str, str]) -> Path:
    """Download a champion's artifacts (name -> artifact URI) into the workspace once, then point the manifest at it.

    The folder is filled under a temporary name and renamed into place, and the manifest is written atomically after
    it: a reader finds the previous copy or this complete one, never a partial one.
    """
    home = copies_dir(settings) / model
    target = home / version
    if not target.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=home, prefix=f".{version}."))
        try:
            for name, uri in artifacts.items():
                landing = tmp / f".{name}"  # a run artifact lands in a sub-folder, a model's files directly in it
                got = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(landing), tracking_uri=settings.tracking_uri
                )
                os.replace(got, tmp / name)
                shutil.rmtree(landing, ignore_errors=True)
            os.replace(tmp, target)
        except OSError:
            if not target.exists():  # another worker renaming the same copy in first is fine
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    saved = datetime.now(UTC).isoformat(timespec="seconds")
    write_json({"version": version, "artifacts": sorted(artifacts), "saved_at": saved}, home / MANIFEST)
    return target


def find_copy(settings: Settings, model: str) -> tuple[str, dict[str, Path], str]:
    """The version, artifact folders and save time of a model's last good copy (FileNotFoundError when none)."""
    home = copies_dir(settings) / model
    path = home / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no local copy of the {model} champion in {home}")
    manifest = json.loads(path.read_text())
    folder = home / manifest["version"]
    return manifest["version"], {name: folder / name for name in manifest["artifacts"]}, manifest["saved_at"]
