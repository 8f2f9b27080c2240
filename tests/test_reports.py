"""`patron report` writes self-contained HTML reports with their plots; `patron compare` gives a bootstrap interval."""

from __future__ import annotations

import base64
import re
import shutil

import mlflow
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from patron.cli.main import app
from tests.conftest import Workspace, small_workspace

PNG = b"\x89PNG\r\n\x1a\n"
# What the small workspace needs beyond the shared one: a CLV horizon inside 400 days of data, one uplift learner,
# and fewer bootstrap resamples.
EXTRA = {
    "clv": {"horizon_days": 120, "num_boost_round": 150},
    "bench": {"folds": 3},
    "uplift": {"learners": ["offset"]},
    "reports": {"n_boot": 300},
}


@pytest.fixture(scope="module")
def report_workspace(trained_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A copy of the trained workspace (champions by reference) with a churn candidate, a CLV and an uplift model."""
    from patron.config import load_settings
    from training.churn.train import train_churn
    from training.value.clv import train_clv
    from training.value.uplift import train_uplift

    ws = small_workspace(tmp_path_factory.mktemp("reports"))
    ws.config.write_text(yaml.safe_dump({**yaml.safe_load(ws.config.read_text()), **EXTRA}))
    settings = load_settings(ws.config)
    source = trained_workspace.settings
    shutil.copytree(source.tables_dir, settings.tables_dir)
    shutil.copy2(source.workspace / "mlflow.db", settings.workspace / "mlflow.db")
    churn = settings.churn
    train_churn(
        settings.model_copy(update={"churn": churn.model_copy(update={"params": {**churn.params, "num_leaves": 7}})})
    )
    train_clv(settings)
    train_uplift(settings)
    return Workspace(settings=settings, config=ws.config)


def _invoke(ws: Workspace, *args: str):
    return CliRunner().invoke(app, ["--config", str(ws.config), *args])


def _offline(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html


def _images(html: str) -> dict[str, bytes]:
    """img id -> decoded PNG bytes of every inline image that has an alt text."""
    found = re.findall(r'<img id="([^"]+)" alt="[^"]+" src="data:image/png;base64,([^"]+)"', html)
    return {ident: base64.b64decode(data) for ident, data in found}


@pytest.mark.integration
def test_churn_report_holds_every_plot_and_opens_offline(report_workspace: Workspace) -> None:
    from patron.reports.churn import CHURN_FIGURES

    settings = report_workspace.settings
    out = settings.workspace / "churn report.html"
    result = _invoke(report_workspace, "report", "churn", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.is_file()
    html = out.read_text()
    _offline(html)
    images = _images(html)
    assert set(CHURN_FIGURES) <= set(images)  # roc, precision-recall, calibration, gain, lift, reason-codes
    assert all(png.startswith(PNG) and len(png) > 2000 for png in images.values())
    for table in ("metrics-table", "reason-table", "segment-table"):
        assert f'id="{table}"' in html
    assert "lifecycle_stage=" in html and "purchase_recency" in html  # segments and a reason group are named
    # logged to the champion's run
    client = mlflow.MlflowClient(settings.tracking_uri)
    champion = client.get_model_version_by_alias(settings.tracking.churn_model, settings.tracking.champion_alias)
    assert "reports/churn report.html" in [a.path for a in client.list_artifacts(champion.run_id, "reports")]


@pytest.mark.integration
def test_recommender_and_retention_reports_have_their_sections(report_workspace: Workspace) -> None:
    from patron.reports.recommender import RECOMMENDER_FIGURES, recommender_report
    from patron.reports.retention import RETENTION_FIGURES, retention_report

    settings = report_workspace.settings
    rec = recommender_report(settings).read_text()
    _offline(rec)
    assert set(RECOMMENDER_FIGURES) <= set(_images(rec))
    for section in ("metrics-table", "coverage-table", "examples-table"):
        assert f'id="{section}"' in rec
    assert "cold (&lt;" in rec and "catalogue_coverage" in rec and "recommended" in rec

    ret = retention_report(settings).read_text()
    _offline(ret)
    assert set(RETENTION_FIGURES) <= set(_images(ret))  # profit curve, Qini curve, loyalty over time
    for section in ("profit-table", "loyalty-segment-table", "loyalty-month-table"):
        assert f'id="{section}"' in ret
    for figure in ("participation", "repurchase_rate", "points_redemption_rate", "basket_value", "loyalty_tier="):
        assert figure in ret


@pytest.mark.integration
def test_compare_churn_shows_both_versions_the_difference_and_its_interval(report_workspace: Workspace) -> None:
    settings = report_workspace.settings
    result = _invoke(report_workspace, "compare", "churn")
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(settings.tracking_uri)
    name = settings.tracking.churn_model
    champion = client.get_model_version_by_alias(name, settings.tracking.champion_alias)
    latest = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    rows = dict(re.findall(r"^\s*(champion v\d+|candidate v\d+)\s+(-?\d\.\d+)", result.output, re.M))
    assert set(rows) == {f"champion v{champion.version}", f"candidate v{latest}"}
    # the champion's figure is its registered test ROC-AUC: the same evaluation data
    assert float(rows[f"champion v{champion.version}"]) == pytest.approx(
        float(champion.tags["patron.primary_value"]), abs=1e-4
    )
    diff, low, high = map(
        float,
        re.search(
            r"difference ([-+]\d\.\d+), 95% bootstrap interval \[([-+]\d\.\d+), "
            r"([-+]\d\.\d+)\]",
            result.output,
        ).groups(),
    )
    assert diff == pytest.approx(
        float(rows[f"candidate v{latest}"]) - float(rows[f"champion v{champion.version}"]), abs=2e-4
    )
    assert low <= diff <= high and low < high
    assert "300 resamples" in result.output


def test_bootstrap_interval_is_seeded_and_covers_the_estimate() -> None:
    from sklearn.metrics import roc_auc_score

    from patron.reports.compare import bootstrap_interval, roc_auc_rows

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.3 + rng.random(400), 0, None)
    assert roc_auc_rows(y[None], p[None])[0] == pytest.approx(roc_auc_score(y, p))
    first = bootstrap_interval(400, lambda i: roc_auc_rows(y[i], p[i]), 200, 0.9, seed=3)
    assert first == bootstrap_interval(400, lambda i: roc_auc_rows(y[i], p[i]), 200, 0.9, seed=3)
    assert first[0] < roc_auc_score(y, p) < first[1]


@pytest.mark.integration
def test_compare_and_report_errors_say_what_to_do(report_workspace: Workspace) -> None:
    result = _invoke(report_workspace, "compare", "recommender")  # only the champion is registered
    assert result.exit_code == 2 and "patron train recommender" in result.output
    result = _invoke(report_workspace, "report", "churn", "--run", "no-such-run")
    assert result.exit_code == 2 and "--run no-such-run" in result.output
