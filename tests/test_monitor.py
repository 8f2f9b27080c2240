"""`patron monitor`: PSI arithmetic, the logged reference profile, and drift found on shifted data only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from patron.cli.main import app
from patron.config import MonitorConfig, load_settings
from tests.conftest import SMALL_CONFIG, Workspace
from training.mlops import drift

CFG = MonitorConfig()
# Cutoffs near the end of a 400-day history and windows short enough to be complete at every training cutoff, so
# the unshifted data differs from the training data by its age only. The synthetic retention campaigns run every
# 30 days, so days since the last offer depends on where a cutoff falls in that calendar: reported, not flagged.
MONITOR_CONFIG = {
    **SMALL_CONFIG,
    "features": {
        "windows_days": [30, 90],
        "lookback_days": 90,
        "horizon_days": 30,
        "train_cutoffs_days_before_end": [120, 105, 90],
        "valid_cutoff_days_before_end": 60,
        "test_cutoff_days_before_end": 30,
    },
    "monitor": {"ignore_features": [*load_settings().monitor.ignore_features, "days_since_last_offer"]},
}
PRICE_FACTOR = 2.5
EXTRA_TICKETS = 3  # copies of each recent ticket: four times the complaint rate


def _workspace(root, tables_from=None) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "patron.yaml"
    config.write_text(yaml.safe_dump({**MONITOR_CONFIG, "workspace": str(root / "workspace")}))
    ws = Workspace(settings=load_settings(config), config=config)
    if tables_from is not None:  # same tables, the source's registry (artifacts stay where they were logged)
        shutil.copytree(tables_from.tables_dir, ws.settings.tables_dir)
        shutil.copy2(tables_from.workspace / "mlflow.db", ws.settings.workspace / "mlflow.db")
    return ws


@pytest.fixture(scope="module")
def monitored(ingested_workspace: Workspace, tmp_path_factory) -> Workspace:
    """The session's ingested tables with both champions trained on cutoffs near the end of the data."""
    from training.churn.train import train_churn
    from training.mlops.registry import promote
    from training.recommend.train import train_recommender

    ws = _workspace(tmp_path_factory.mktemp("monitor"))
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    train_recommender(ws.settings)
    train_churn(ws.settings)
    promote(ws.settings, "recommender")
    promote(ws.settings, "churn")
    return ws


def _shift(ws: Workspace) -> None:
    """Recent purchases cost PRICE_FACTOR times more and every recent ticket comes with EXTRA_TICKETS more."""
    from features.pit.build import data_end
    from features.tables.store import read_table, write_table

    settings = ws.settings
    start = data_end(settings) - pd.Timedelta(days=settings.features.lookback_days)
    events = read_table(settings.tables_dir, "events")
    recent = (events["type"] == "purchase") & (events["ts"] >= start)
    events.loc[recent, "unit_price"] = events.loc[recent, "unit_price"] * PRICE_FACTOR
    write_table(events, settings.tables_dir, "events")
    tickets = read_table(settings.tables_dir, "tickets")
    recent_tickets = tickets[tickets["opened_at"] >= start]
    copies = [
        recent_tickets.assign(ticket_id=recent_tickets["ticket_id"].astype(str) + f"-x{n}")
        for n in range(EXTRA_TICKETS)
    ]
    write_table(pd.concat([tickets, *copies], ignore_index=True), settings.tables_dir, "tickets")


def _monitor(ws: Workspace, out) -> tuple[int, str, dict]:
    result = CliRunner().invoke(app, ["--config", str(ws.config), "--no-progress", "monitor", "--out", str(out)])
    return result.exit_code, result.output, json.loads((out / "monitor.json").read_text())


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    ref = {"a": 0.5, "b": 0.5}
    assert drift.psi(ref, ref, CFG.psi_epsilon) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert drift.psi(ref, {"a": 0.7, "b": 0.3}, CFG.psi_epsilon) == pytest.approx(expected)
    assert drift.psi(ref, {"a": 0.9, "b": 0.1}, CFG.psi_epsilon) > expected


def test_profile_bins_live_values_with_the_reference_edges() -> None:
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=5000))
    profile = drift.column_profile(pd.concat([reference, pd.Series([np.nan] * 50)]), bins=10)
    assert len(profile["edges"]) == 9 and profile["shares"][drift.MISSING] == pytest.approx(50 / 5050)
    same = drift.live_shares(pd.Series([*rng.normal(size=5000), *[np.nan] * 50]), profile)
    moved = drift.live_shares(pd.Series(rng.normal(1.0, size=5000)), profile)
    assert drift.psi(profile["shares"], same, CFG.psi_epsilon) < 0.02
    assert drift.psi(profile["shares"], moved, CFG.psi_epsilon) > 0.25
    levels = drift.column_profile(pd.Series(pd.Categorical(["gold", "silver", None, "gold"])), bins=10)
    assert levels["kind"] == "categorical" and levels["shares"]["gold"] == 0.5


@pytest.mark.slow
def test_logged_reference_matches_the_one_rebuilt_from_the_cutoffs(monitored: Workspace) -> None:
    from features.pit.build import training_set
    from training.mlops.monitor import ChampionChurn, champion_reference, training_profile

    champion = ChampionChurn(monitored.settings)
    logged, source = champion_reference(monitored.settings, champion)
    assert source == "logged" and "rows" in logged and "cutoffs" in logged  # aggregates only, never rows
    train = training_set(monitored.settings, logged["cutoffs"])
    rebuilt = training_profile(monitored.settings, train, champion.features, champion.predict(train))
    assert rebuilt["rows"] == logged["rows"] and set(rebuilt["features"]) == set(logged["features"])
    for name, profile in logged["features"].items():
        assert rebuilt["features"][name]["shares"] == pytest.approx(profile["shares"], abs=1e-9), name
    assert rebuilt["scores"]["edges"] == pytest.approx(logged["scores"]["edges"], abs=1e-9)


@pytest.mark.slow
def test_monitor_stays_quiet_on_unshifted_data(monitored: Workspace, tmp_path) -> None:
    code, output, report = _monitor(_workspace(tmp_path / "same", monitored.settings), tmp_path / "out")
    assert code == 0, output
    assert report["flagged"] == [] and "no drift" in output
    assert (tmp_path / "out" / "monitor.md").read_text().startswith("# Drift report")
    assert {r["kind"] for r in report["psi"]} == {"feature", "score", "extra"}
    assert report["coverage"] is not None and not report["coverage"]["flagged"]


@pytest.mark.slow
def test_monitor_flags_shifted_prices_and_complaints(monitored: Workspace, tmp_path) -> None:
    ws = _workspace(tmp_path / "shifted", monitored.settings)
    _shift(ws)
    code, output, report = _monitor(ws, tmp_path / "out")
    assert code == 1, output
    flagged = set(report["flagged"])
    assert "purchase_unit_price" in flagged and "spend_90d" in flagged
    assert {"tickets_30d", "tickets_90d"} <= flagged
    assert not any(name.endswith("_total") for name in flagged)  # ignored: they grow with the age of the data
    assert not flagged & {"views_90d", "nps_last"}  # untouched behaviour stays under the threshold
    for name in ("purchase_unit_price", "spend_90d"):
        assert name in output
