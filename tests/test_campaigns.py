"""Campaigns: the seeded stratified holdout, the simulator playing a campaign forward, the readout's intervals against
the true effects, and the whole loop through the command line and the real server (POST /campaigns, GET /campaigns/ID).
"""

from __future__ import annotations

import json
import shutil
import sys

import cloudpickle
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.synthetic.campaign_play import _p_retained, play_forward
from features.tables.campaigns import HOLDOUT, TREATMENT, campaign_id, read_campaign
from training.value.campaign_readout import ReadoutSettings, outcomes_from, readout
from training.value.holdout import assign_arms

READOUT = ReadoutSettings(confidence=0.95, bootstrap=1000, min_arm_customers=30, seed=3)
OFFERS = ["discount_voucher", "free_delivery", "personal_call"]


def _plan_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    segments = np.array(["active/high", "active/low", "at_risk/high", "new/medium"])
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "segment": rng.choice(segments, n, p=[0.4, 0.3, 0.2, 0.1]),
            "offer_type": rng.choice(OFFERS, n, p=[0.6, 0.3, 0.1]),
            "cost": 5.0,
            "expected_net_value": rng.gamma(2.0, 5.0, n),
            "clv": rng.gamma(2.0, 100.0, n),
        }
    )


def test_holdout_is_stratified_balanced_and_seeded() -> None:
    rows = _plan_rows(3000, 1)
    arms = assign_arms(rows, 0.2, seed=42)
    assert set(arms) == {TREATMENT, HOLDOUT} and arms.index.equals(rows.index)
    assert abs((arms == HOLDOUT).sum() - 600) <= 1
    held = rows.assign(arm=arms)
    for _, stratum in held.groupby(["segment", "offer_type"]):  # every stratum within one customer of 20%
        assert abs((stratum["arm"] == HOLDOUT).sum() - 0.2 * len(stratum)) <= 1
    for column in ("segment", "offer_type"):  # both arms hold the same mix
        shares = pd.crosstab(held[column], held["arm"], normalize="columns")
        assert (shares[TREATMENT] - shares[HOLDOUT]).abs().max() < 0.01
    assert assign_arms(rows, 0.2, seed=42).equals(arms)  # same seed, same assignment
    other = assign_arms(rows, 0.2, seed=43)
    assert not other.equals(arms) and abs((other == HOLDOUT).sum() - 600) <= 1
    for bad in (0.0, -0.1, 0.51, 1.0):
        with pytest.raises(ValueError, match="holdout"):
            assign_arms(rows, bad, seed=1)


def test_campaign_ids_are_slugs_and_unknown_ids_are_not_paths(tmp_path) -> None:
    assert campaign_id("Spring Save 2026!") == "spring-save-2026"
    with pytest.raises(ValueError, match="name"):
        campaign_id("!!!")
    for bad in ("missing", "../tables", "a/b", ""):
        with pytest.raises(LookupError, match="campaign id"):
            read_campaign(tmp_path, bad)


def test_closed_form_retention_matches_simulation() -> None:
    n, rng = 40_000, np.random.default_rng(5)
    h, r, eff = np.full(n, 0.01), np.full(n, 0.03), np.full(n, -1.0)
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "hazard": h,
            "purchase_rate": r,
            "preferred_channel": "web",
            "alive": True,
        }
    )
    half = n // 2
    campaign = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "arm": [TREATMENT] * half + [HOLDOUT] * (n - half),
            "offer_type": "discount_voucher",
            "log_hazard_effect": eff,
        }
    )
    start = pd.Timestamp("2026-01-01")
    played = play_forward(customers, campaign, start, 90, 60, 0.5, rng)
    bought = set(played.purchases["customer_id"])
    for arm, offer in ((TREATMENT, -1.0), (HOLDOUT, 0.0)):
        ids = campaign.loc[campaign["arm"] == arm, "customer_id"]
        observed = ids.isin(bought).mean()
        expected = _p_retained(h[:1], np.array([offer]), r[:1], 90, 60)[0]
        assert observed == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / len(ids)))
    assert played.truth["true_effect"].iloc[0] == pytest.approx(
        _p_retained(h[:1], eff[:1], r[:1], 90, 60)[0] - _p_retained(h[:1], np.zeros(1), r[:1], 90, 60)[0]
    )
    assert played.purchases["ts"].between(start, start + pd.Timedelta(days=90)).all()
    redeemed = set(played.redeemed["customer_id"])
    assert redeemed and redeemed <= set(campaign.loc[campaign["arm"] == TREATMENT, "customer_id"])  # holdout: none


def test_newcombe_interval_matches_the_published_example_and_never_collapses() -> None:
    from training.value.campaign_readout import newcombe_interval

    arm = lambda k, n: np.r_[np.ones(k), np.zeros(n - k)]  # noqa: E731
    low, high = newcombe_interval(arm(56, 70), arm(48, 80), 0.95)  # Newcombe (1998), table II, example (a)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    low, high = newcombe_interval(np.ones(32), np.ones(8), 0.95)  # everyone retained in both arms
    assert low < -0.05 and high > 0.05


def test_readout_intervals_hold_the_true_effect_and_say_when_too_few() -> None:
    rows = _plan_rows(4000, 2)
    rng = np.random.default_rng(2)
    effect = {"discount_voucher": -1.2, "free_delivery": 0.0, "personal_call": -2.0}
    customers = pd.DataFrame(
        {
            "customer_id": rows["customer_id"],
            "hazard": rng.gamma(2.0, 0.004, len(rows)),
            "purchase_rate": rng.gamma(2.0, 0.01, len(rows)),
            "preferred_channel": "web",
            "alive": rng.random(len(rows)) > 0.05,
        }
    )
    covered = 0
    for seed in (11, 12, 13):
        assigned = rows.assign(arm=assign_arms(rows, 0.2, seed).to_numpy())
        campaign = assigned[["customer_id", "arm", "offer_type"]].assign(
            log_hazard_effect=assigned["offer_type"].map(effect)
        )
        played = play_forward(customers, campaign, pd.Timestamp("2026-01-01"), 90, 60, 0.6, np.random.default_rng(seed))
        frame = outcomes_from(
            assigned,
            played.purchases.assign(value=2.5)[["customer_id", "ts", "value"]],
            set(played.redeemed["customer_id"]),
        )
        result = readout(frame, READOUT)
        truth = played.truth.groupby("offer_type")["true_effect"].mean() * 100
        for g in result["by_offer"]:
            low, high = g["retained"]["ci"]
            covered += low <= truth[g["offer_type"]] <= high
            assert g["treatment"] + g["holdout"] == (rows["offer_type"] == g["offer_type"]).sum()
        voucher = next(g for g in result["by_offer"] if g["offer_type"] == "discount_voucher")
        assert voucher["retained"]["effect"] > 0 and voucher["redemption_rate"] > 0
        assert "pts retention" in voucher["verdict"] and "net" in voucher["verdict"]
        assert voucher["revenue"]["treatment"] > 0
    assert covered >= 8  # of 9 intervals (3 offers x 3 seeds)
    tiny = readout(frame.head(40), READOUT)["overall"][0]
    assert "too few customers for a verdict" in tiny["verdict"]


# --- the loop on a workspace: command line and the real server ------------------------------------------------


@pytest.fixture(scope="module")
def campaign_workspace(trained_workspace, refusing_customer, tmp_path_factory):
    """A copy of the trained workspace with a CLV model and a known-effects uplift model registered."""
    from tests.conftest import small_workspace
    from tests.test_retention_plan import KnownEffects
    from training.mlops import tracking
    from training.value.clv import train_clv

    source = trained_workspace.settings
    ws = small_workspace(tmp_path_factory.mktemp("campaigns"))
    settings = ws.settings
    shutil.copytree(source.tables_dir, settings.tables_dir)
    shutil.copytree(source.ground_truth_dir, settings.ground_truth_dir)
    shutil.copy2(source.workspace / "mlflow.db", settings.workspace / "mlflow.db")
    train_clv(
        settings.model_copy(
            update={"clv": settings.clv.model_copy(update={"horizon_days": 120, "num_boost_round": 150, "folds": 3})}
        )
    )
    tracking.configure(settings)
    cloudpickle.register_pickle_by_value(sys.modules[KnownEffects.__module__])
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=KnownEffects(), registered_model_name=settings.tracking.uplift_model
        )
    return ws


def _patron(ws, *args: str):
    from patron.cli.main import app

    return CliRunner().invoke(app, ["--config", str(ws.config), "--no-progress", *args])


@pytest.mark.integration
def test_campaign_loop_on_the_command_line(campaign_workspace, tmp_path) -> None:
    from features.privacy.consent import consent_refusals
    from features.tables.store import read_table

    ws, settings = campaign_workspace, campaign_workspace.settings
    offers_before = len(read_table(settings.tables_dir, "offers"))
    export = tmp_path / "treated.csv"
    made = _patron(
        ws, "campaign", "create", "--budget", "60", "--holdout", "0.2", "--name", "Spring", "--out", str(export)
    )
    assert made.exit_code == 0, made.output
    assert "campaign spring created" in made.output
    campaign = read_campaign(settings.campaigns_dir, "spring")
    a = campaign.assignment
    assert a["customer_id"].is_unique and set(a["arm"]) == {TREATMENT, HOLDOUT}
    assert not set(a["customer_id"]) & consent_refusals(settings, "marketing")  # never without marketing consent
    assert campaign.meta["spend"] <= 60 and campaign.meta["holdout"] == (a["arm"] == HOLDOUT).sum()
    folder = settings.campaigns_dir / "spring"
    for name in ("campaign.json", "assignment.parquet", "treated.csv", "treated.parquet"):
        assert (folder / name).is_file()
    treated_export = pd.read_csv(export)
    assert set(treated_export["customer_id"]) == set(a.loc[a["arm"] == TREATMENT, "customer_id"])
    assert {"offer_type", "preferred_channel", "top_reasons"} <= set(treated_export.columns)
    offers = read_table(settings.tables_dir, "offers")
    mine = offers[offers["offer_id"].str.startswith("spring:")]
    assert len(offers) == offers_before + len(mine) and mine["randomized"].all()
    assert set(mine["customer_id"]) == set(a.loc[a["arm"] == TREATMENT, "customer_id"])  # the holdout: no offer
    assert (mine["sent_at"] == campaign.sent_at).all()

    again = _patron(ws, "campaign", "create", "--budget", "60", "--name", "spring")
    assert again.exit_code == 0 and "not duplicated" in again.output
    assert len(read_table(settings.tables_dir, "offers")) == len(offers)
    assert [p.name for p in settings.campaigns_dir.iterdir() if not p.name.startswith(".")] == ["spring"]

    for args, field in (
        (["--budget", "-1"], "budget"),
        (["--budget", "10", "--holdout", "0.6"], "holdout"),
        (["--budget", "10", "--holdout", "0"], "holdout"),
        (["--budget", "0", "--name", "nobody"], "budget"),
    ):
        bad = _patron(ws, "campaign", "create", *args)
        assert bad.exit_code != 0 and field in bad.output, bad.output
    assert not (settings.campaigns_dir / "nobody").exists()

    provisional = _patron(ws, "campaign", "report", "spring", "--json", str(tmp_path / "early.json"))
    assert provisional.exit_code == 0, provisional.output
    assert json.loads((tmp_path / "early.json").read_text())["provisional"] is True

    events_before = len(read_table(settings.tables_dir, "events"))
    played = _patron(ws, "data", "synth", "--play-campaign", "spring")
    assert played.exit_code == 0, played.output
    assert len(read_table(settings.tables_dir, "events")) > events_before
    truth = pd.read_parquet(settings.ground_truth_dir / "campaigns" / "spring.parquet")
    assert set(truth["customer_id"]) == set(a["customer_id"])
    assert _patron(ws, "data", "synth", "--play-campaign", "spring").exit_code != 0  # plays once

    out = tmp_path / "readout.html"
    report = _patron(ws, "campaign", "report", "spring", "--out", str(out), "--json", str(tmp_path / "r.json"))
    assert report.exit_code == 0, report.output
    result = json.loads((tmp_path / "r.json").read_text())
    overall = result["overall"][0]
    assert overall["treatment"] == campaign.meta["treatment"] and overall["holdout"] == campaign.meta["holdout"]
    assert result["by_offer"] and result["by_segment"] and overall["verdict"] in report.output
    assert overall["expected_net_value"] == pytest.approx(campaign.meta["expected_net_value"])
    html = out.read_text()
    assert 'id="offer-effects"' in html and 'id="segment-effects"' in html and "Verdicts" in html
    runs = mlflow.search_runs(
        experiment_names=[settings.tracking.experiment], filter_string="tags.`patron.campaign` = 'spring'"
    )
    assert len(runs) == 2  # the provisional and the final readout, each its own run

    missing = _patron(ws, "campaign", "report", "nope")
    assert missing.exit_code != 0 and "campaign id" in missing.output


@pytest.fixture(scope="module")
def campaign_server(campaign_workspace, tmp_path_factory):
    from tests.conftest import start_patron_server, stop_server

    proc, server = start_patron_server(campaign_workspace, tmp_path_factory.mktemp("campaign_server") / "server.log")
    yield server
    stop_server(proc)


@pytest.mark.integration
def test_campaign_endpoints(campaign_server) -> None:
    http = campaign_server.client(timeout=120)
    made = http.post("/campaigns", json={"budget": 40.0, "holdout": 0.25, "name": "Served one"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["created"] is True and body["campaign"]["id"] == "served-one"
    assert body["campaign"]["holdout"] > 0 and body["campaign"]["spend"] <= 40
    again = http.post("/campaigns", json={"budget": 40.0, "name": "Served one"}).json()
    assert again["created"] is False and again["campaign"] == body["campaign"]
    readout_body = http.get("/campaigns/served-one")
    assert readout_body.status_code == 200, readout_body.text
    r = readout_body.json()
    assert r["provisional"] is True and r["overall"][0]["treatment"] == body["campaign"]["treatment"]
    assert http.get("/campaigns/no-such-campaign").status_code == 404
    for payload, field in (
        ({"budget": -1.0}, "budget"),
        ({"budget": 10.0, "holdout": 0.7}, "holdout"),
        ({"budget": 10.0, "holdout": 0.0}, "holdout"),
        ({"budget": 0.0, "name": "empty"}, "budget"),
    ):
        bad = http.post("/campaigns", json=payload)
        assert bad.status_code == 400 and field in bad.text, bad.text
    assert http.get("/campaigns/empty").status_code == 404
    nokey = campaign_server.client().__class__(base_url=campaign_server.url)
    assert nokey.post("/campaigns", json={"budget": 1.0}).status_code == 401


@pytest.mark.integration
def test_campaign_bench_reports_coverage_and_narrower_intervals_for_larger_campaigns(
    campaign_workspace, monkeypatch, tmp_path
) -> None:
    import benchmarks.campaign as bench
    from patron.config import CampaignBenchConfig

    settings = campaign_workspace.settings.model_copy(
        update={
            "campaign_bench": CampaignBenchConfig(customers=1000, sizes=[40, 160], repetitions=2),
            "campaign": campaign_workspace.settings.campaign.model_copy(update={"min_arm_customers": 5}),
        }
    )
    monkeypatch.setattr(bench, "bench_workspace", lambda s, echo: s)  # the module's workspace, models registered
    report, paths = bench.run_campaign_bench(settings, echo=lambda _: None)
    small, large = report.rows
    assert (small["campaign"], small["repetitions"]) == ("40 customers", 2) and large["customers"] > 40
    for row in report.rows:
        assert 0 <= row["offers_covered"] <= row["covered"] or row["offers_covered"] <= 2
        assert row["treated"] == pytest.approx(0.8 * row["customers"], abs=1)  # the 20% holdout
    assert large["ci_width_pts"] < small["ci_width_pts"]
    assert report.tables["by_offer"].rows and all(p.exists() for p in paths)
    details = json.loads(paths[1].read_text())["details"]
    assert len(details["40 customers"]) >= 2 and {"covered", "true_effect_pts"} <= set(details["40 customers"][0])
