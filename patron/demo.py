"""`patron demo`: the embedded demo end to end (synthesise, ingest, features, train, promote, serve), reusing what
exists."""

from __future__ import annotations

import time
from collections.abc import Callable

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.ingest.pipeline import ingest_source
from features.pit.build import build_features
from features.synthetic.generate import generate
from patron.config import Settings
from serving.access.api_keys import SCOPES, create_key, read_keys
from training.churn.train import train_churn
from training.mlops.registry import promote
from training.recommend.train import train_recommender
from training.value.clv import train_clv
from training.value.uplift import train_uplift

DEMO_KEY_NAME = "demo"


def _has_champion(settings: Settings, model_name: str) -> bool:
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        MlflowClient().get_model_version_by_alias(model_name, settings.tracking.champion_alias)
    except MlflowException:
        return False
    return True


def prepare(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Bring the workspace to a servable state, skipping every step whose output already exists."""
    start = time.perf_counter()
    raw = settings.raw_dir / "synthetic"
    if not (raw / "events.parquet").exists():
        echo(generate(settings).summary())
    else:
        echo(f"synthetic retailer already in {raw}: reusing it")
    if not (settings.tables_dir / "events.parquet").exists():
        echo(ingest_source(settings, source="synthetic").summary())
    else:
        echo(f"tables already in {settings.tables_dir}: reusing them")
    echo(build_features(settings).summary())
    for kind, model_name, train in (
        ("recommender", settings.tracking.recommender_model, train_recommender),
        ("churn", settings.tracking.churn_model, train_churn),
    ):
        if _has_champion(settings, model_name):
            echo(f"{model_name} already has a champion: reusing it (retrain with `patron train {kind}`)")
            continue
        result = train(settings)
        echo(
            f"trained {model_name} v{result.model_version}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        )
        echo(promote(settings, kind).message)
    # The retention plan's inputs (CLV and offer effects): the service uses their champion, else the latest version.
    for kind, model_name, train in (
        ("clv", settings.tracking.clv_model, train_clv),
        ("uplift", settings.tracking.uplift_model, train_uplift),
    ):
        if MlflowClient(settings.tracking_uri).search_model_versions(f"name='{model_name}'"):
            echo(f"{model_name} already registered: reusing it (retrain with `patron train {kind}`)")
            continue
        result = train(settings)
        echo(f"trained {model_name} v{result.model_version}")
    echo(f"data and training ready in {time.perf_counter() - start:.0f} s")


def demo_key(settings: Settings) -> str | None:
    """A fresh all-scope key named 'demo' unless the workspace holds keys of the operator's own (then None).

    Only the key's hash is stored, so each demo run issues a new one to print; the previous demo key stops working.
    """
    if any(k.name != DEMO_KEY_NAME for k in read_keys(settings.api_keys_file)):
        return None
    return create_key(settings.api_keys_file, DEMO_KEY_NAME, list(SCOPES), replace=True)


def curl_lines(settings: Settings, port: int, key: str | None) -> list[str]:
    """Example requests to try against the running demo, sending the API key from $PATRON_KEY."""
    base = f"http://127.0.0.1:{port}"
    h = "-H 'Content-Type: application/json' -H \"Authorization: Bearer $PATRON_KEY\""
    export = (
        f"export PATRON_KEY={key}    # the demo's API key, all scopes (shown once; stored hashed in "
        f"{settings.api_keys_file})"
        if key
        else f"export PATRON_KEY=...    # one of your keys in {settings.api_keys_file} (`patron keys list`)"
    )
    return [
        export,
        f"curl -s {base}/readyz",
        f'curl -s -X POST {base}/recommend {h} -d \'{{"customer_id": "C0000001", "k": 5}}\'',
        f'curl -s -X POST {base}/similar_items {h} -d \'{{"item_id": "I00001", "k": 5}}\'',
        f'curl -s -X POST {base}/churn {h} -d \'{{"customer_ids": ["C0000001", "C0000002"]}}\'',
        f"curl -s -X POST {base}/retention/plan {h} -d '{{\"budget\": 200}}'",
    ]
