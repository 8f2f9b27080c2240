"""MLflow tracking for Patron runs: offline setup, experiment, run metadata, dataset digests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Set before MLflow is imported so that nothing in it tries the network (telemetry, env-var capture).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from features.tables.store import fingerprint  # noqa: E402
from patron.config import REPO_ROOT, Settings  # noqa: E402

# MLflow's hint about integer columns (they cannot hold missing values) does not apply: ids and counts never do.
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)

# Fault-injection hook for the tests: a training run pauses (until killed) at the step this variable names.
FAULT_PAUSE_ENV = "PATRON_FAULT_PAUSE_AT"
CODE_VERSION_TAG = "patron.code_version"
FINGERPRINT_TAG = "patron.eval_fingerprint"
MODEL_KIND_TAG = "patron.model"


@dataclass
class TrainResult:
    """Outcome of a training run: the MLflow run, the registered model version and its metrics."""

    model: str
    run_id: str
    model_version: int
    metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per model: name, version and metrics."""
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.metrics.items()))
        return f"{self.model}: registered version {self.model_version} (run {self.run_id}) {shown}"


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the workspace store, create the experiment (with its artifact location) and return a client."""
    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    if client.get_experiment_by_name(settings.tracking.experiment) is None:
        client.create_experiment(settings.tracking.experiment, artifact_location=settings.artifact_location)
    mlflow.set_experiment(settings.tracking.experiment)
    return client


def fault_pause(step: str) -> None:
    """Block forever at `step` when $PATRON_FAULT_PAUSE_AT names it (tests kill the run there); else a no-op."""
    if os.environ.get(FAULT_PAUSE_ENV) == step:
        print(f"{FAULT_PAUSE_ENV}: paused at {step}", file=sys.stderr, flush=True)
        threading.Event().wait()


def code_version() -> str:
    """The git commit of the source checkout (`+dirty` with uncommitted changes), or the package version outside git."""
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()

        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return version("patron")
        except PackageNotFoundError:
            return "unknown"


def flat_params(section: BaseModel, prefix: str) -> dict[str, str]:
    """A pydantic config section as flat MLflow params (`prefix.key` / `prefix.key.sub`)."""
    out: dict[str, str] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        else:
            out[key] = str(value)

    walk(section.model_dump(mode="json"), prefix)
    return out


@contextmanager
def patron_run(settings: Settings, model: str, section: BaseModel) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run carrying the config section as params, the whole settings as an artifact and the code version."""
    configure(settings)
    with mlflow.start_run(run_name=f"train-{model}") as run:
        mlflow.set_tags({CODE_VERSION_TAG: code_version(), MODEL_KIND_TAG: model})
        mlflow.log_params(flat_params(section, model))
        mlflow.log_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), "settings.yaml")
        yield run


DATASET_LOG_ATTEMPTS = 3  # see log_dataset_digest: a lost insert race is retried, anything else raised at once


def log_dataset_digest(df: pd.DataFrame, name: str, context: str) -> str:
    """Log a dataset's schema, row count and content digest (no rows) as an MLflow input; returns the digest."""
    digest = fingerprint(df)
    # An empty frame with the same columns carries the schema; digest and row count describe the content.
    schema_only = df.head(0)
    dataset = mlflow.data.from_pandas(schema_only, name=name, digest=digest[:32])
    for attempt in range(DATASET_LOG_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context=context, tags={"rows": str(len(df)), "sha256": digest})
            break
        except MlflowException as exc:
            # Two processes (tuning workers on one study) logging the same dataset at once: the store's unique
            # (experiment, name, digest) row was inserted by the other one between our lookup and our insert. The
            # next attempt finds that row and only links it to this run.
            if attempt + 1 == DATASET_LOG_ATTEMPTS or not _is_duplicate_row(exc):
                raise
    mlflow.log_metric(f"rows_{context}", len(df))
    return digest


def _is_duplicate_row(exc: MlflowException) -> bool:
    text = str(exc)
    return any(m in text for m in ("UNIQUE constraint failed", "duplicate key value", "IntegrityError"))
