"""The retention plan: the multiple-choice knapsack, consent, offers parsing, plan rows and the realised value."""

from __future__ import annotations

import itertools
import shutil
import sys

import cloudpickle
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from patron.config import RetentionConfig
from serving.answers.offer_allocation import allocate, candidate_pairs, greedy_allocation
from serving.answers.retention_plan import (
    CustomerValue,
    build_plan,
    churn_ranked_plan,
    parse_offers,
    read_offers,
    realised_value,
    write_plan,
)

CFG = RetentionConfig()
OFFERS = {"voucher": 5.0, "delivery": 3.0, "call": 8.0}


def _random_pairs(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clv = pd.Series(rng.gamma(2.0, 60.0, n), index=[f"c{i:04d}" for i in range(n)])
    effects = pd.DataFrame(rng.normal(0.03, 0.06, (n, len(OFFERS))), index=clv.index, columns=list(OFFERS))
    return candidate_pairs(clv, effects, OFFERS)


def _check_feasible(chosen: pd.DataFrame, budget: float, max_customers: int | None = None) -> None:
    assert chosen["cost"].sum() <= budget + 1e-9
    assert chosen["customer_id"].is_unique
    assert (chosen["expected_net_value"] > 0).all()
    if max_customers is not None:
        assert len(chosen) <= max_customers


def test_candidate_pairs_value_is_clv_times_effect_minus_cost() -> None:
    clv = pd.Series([100.0, 50.0], index=["a", "b"])
    effects = pd.DataFrame({"voucher": [0.1, 0.02], "call": [0.3, -0.1]}, index=["a", "b"])
    pairs = candidate_pairs(clv, effects, {"voucher": 5.0, "call": 8.0}).set_index(["customer_id", "offer_type"])
    assert pairs.loc[("a", "voucher"), "expected_net_value"] == pytest.approx(100 * 0.1 - 5)
    assert pairs.loc[("b", "call"), "expected_net_value"] == pytest.approx(50 * -0.1 - 8)
    with pytest.raises(ValueError, match="offers: unknown offer type"):
        candidate_pairs(clv, effects, {"sms": 1.0})


def test_milp_matches_brute_force_on_a_small_case() -> None:
    pairs = _random_pairs(5, seed=3)
    budget = 14.0
    options = [[None] + list(g.index) for _, g in pairs.groupby("customer_id")]
    best = 0.0
    for combo in itertools.product(*options):
        picked = pairs.loc[[i for i in combo if i is not None]]
        if picked["cost"].sum() <= budget:
            best = max(best, picked["expected_net_value"].sum())
    result = allocate(pairs, budget, None, CFG)
    assert result.optimal
    assert result.value == pytest.approx(best, rel=1e-6)
    _check_feasible(result.chosen, budget)


def test_milp_takes_over_when_the_greedy_is_far_from_its_bound() -> None:
    # the greedy takes the most efficient offer (a: 7 for 6), then b and c (5 for 5 each) no longer fit together
    pairs = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "offer_type": "call",
            "cost": [6.0, 5.0, 5.0],
            "expected_net_value": [7.0, 5.0, 5.0],
        }
    )
    greedy = greedy_allocation(pairs, 10.0)
    assert greedy.value == pytest.approx(7.0) and greedy.upper_bound == pytest.approx(7.0 + 4 / 5 * 5)
    exact = allocate(pairs, 10.0, None, CFG)
    assert exact.method == "milp" and exact.optimal and exact.value == pytest.approx(10.0)
    assert sorted(exact.chosen["customer_id"]) == ["b", "c"]
    assert allocate(pairs, 10.0, None, RetentionConfig(solver_max_pairs=2)).value == pytest.approx(7.0)


@pytest.mark.parametrize("budget", [0.0, 7.0, 60.0, 400.0, 1e6])
def test_never_exceeds_budget_and_milp_at_least_greedy(budget: float) -> None:
    pairs = _random_pairs(300, seed=11)
    exact = allocate(pairs, budget, None, CFG)
    greedy = greedy_allocation(pairs, budget)
    _check_feasible(exact.chosen, budget)
    _check_feasible(greedy.chosen, budget)
    assert exact.value >= greedy.value - 1e-6
    assert exact.value <= greedy.upper_bound + 1e-6  # the LP relaxation bounds every feasible plan
    if budget == 0.0:
        assert exact.chosen.empty


def test_large_inputs_stay_greedy_within_budget() -> None:
    pairs = _random_pairs(400, seed=5)
    cfg = RetentionConfig(solver_max_pairs=10, solver_mip_rel_gap=0.0)
    result = allocate(pairs, 100.0, 7, cfg)
    assert result.method == "greedy"
    _check_feasible(result.chosen, 100.0, max_customers=7)
    assert 0 < result.value <= result.upper_bound


def test_max_customers_respected() -> None:
    pairs = _random_pairs(200, seed=2)
    free = allocate(pairs, 1e6, None, CFG)
    capped = allocate(pairs, 1e6, 5, CFG)
    assert len(free.chosen) > 5
    assert len(capped.chosen) == 5
    # with only a head-count limit, the five are the five customers with the best single offer
    best = pairs.groupby("customer_id")["expected_net_value"].max().nlargest(5)
    assert capped.value == pytest.approx(best.sum())


def test_bad_budget_and_max_customers_name_the_field() -> None:
    pairs = _random_pairs(5, seed=1)
    with pytest.raises(ValueError, match="^budget"):
        allocate(pairs, -1.0, None, CFG)
    with pytest.raises(ValueError, match="^max_customers"):
        allocate(pairs, 10.0, -2, CFG)


def _value(n: int = 40) -> tuple[pd.DataFrame, CustomerValue]:
    """High churn risk with little uplift (nearly lost causes) and moderate risk with real uplift."""
    ids = [f"c{i:02d}" for i in range(n)]
    risky = np.arange(n) < n // 2
    churn = np.where(risky, 0.9, 0.4)
    scored = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": churn,
            "reasons": [[{"text": f"reason {i}"}, {"text": "second"}] for i in range(n)],
        }
    )
    effects = pd.DataFrame(
        {
            "voucher": np.where(risky, 0.03, 0.15),
            "delivery": np.where(risky, 0.02, 0.08),
            "call": np.where(risky, 0.05, 0.25),
        },
        index=ids,
    )
    segments = pd.DataFrame({"lifecycle_stage": "active", "value_tier": "high", "rfm_score": 12}, index=ids)
    value = CustomerValue(
        clv=pd.Series(200.0, index=ids),
        effects=effects,
        segments=segments,
        marketing_refused=frozenset(ids[n // 2 : n // 2 + 3]),
        active=frozenset(ids),
        clv_version="1",
        uplift_version="1",
    )
    return scored, value


def test_plan_beats_greedy_by_churn_and_skips_refusals() -> None:
    scored, value = _value()
    budget = 60.0
    plan = build_plan(scored, value, OFFERS, budget, None, CFG, channels=pd.Series("app", index=scored["customer_id"]))
    rows = plan.rows
    assert rows["cost"].sum() <= budget
    assert not set(rows["customer_id"]) & value.marketing_refused
    assert plan.skipped_no_consent == 3
    # naive: riskiest consenting customers first, each with their best offer, until the budget is spent
    # (every offer is worth something to everyone here, so the naive plan spends on the near-lost causes)
    consenting = sorted(set(value.clv.index) - value.marketing_refused)
    pairs = candidate_pairs(value.clv.reindex(consenting), value.effects, OFFERS)
    naive = churn_ranked_plan(pairs, scored.set_index("customer_id")["churn_probability"], budget)
    assert naive["cost"].sum() <= budget and naive["customer_id"].is_unique
    assert (scored.set_index("customer_id").loc[naive["customer_id"], "churn_probability"] == 0.9).all()
    assert 0 < naive["expected_net_value"].sum() < plan.allocation.value
    assert list(rows.columns[:4]) == ["customer_id", "lifecycle_stage", "value_tier", "rfm_score"]
    first = rows.iloc[0]
    assert first["top_reasons"].startswith("reason ") and first["preferred_channel"] == "app"
    assert first["expected_net_value"] == pytest.approx(
        200 * value.effects.loc[first["customer_id"], first["offer_type"]] - first["cost"]
    )


def test_churn_extras_carry_segment_clv_and_best_positive_offer() -> None:
    _, value = _value()
    refused = sorted(value.marketing_refused)[0]
    out = value.customer_extras(["c00", "c25", refused, "nobody"], OFFERS)
    assert out[0]["clv"] == 200.0 and out[0]["segment"] == {
        "lifecycle_stage": "active",
        "value_tier": "high",
        "rfm_score": "12",
    }
    assert out[0]["best_offer"] == {"offer_type": "call", "expected_net_value": pytest.approx(200 * 0.05 - 8)}
    assert out[1]["best_offer"] == {"offer_type": "call", "expected_net_value": pytest.approx(200 * 0.25 - 8)}
    assert out[0]["priority"] == out[1]["priority"] == "save"
    assert out[2]["best_offer"] is None and out[2]["clv"] == 200.0  # no marketing consent: no offer
    assert out[2]["priority"] == "no_marketing_consent"
    assert out[3] == {}
    worthless = value.customer_extras(["c00"], {"voucher": 500.0})[0]  # no offer pays
    assert worthless["best_offer"] is None and worthless["priority"] == "likely_lost"


def test_parse_offers_names_the_bad_field() -> None:
    known = list(OFFERS)
    assert parse_offers([{"offer_type": "call", "cost": 4}], known) == {"call": 4.0}
    assert parse_offers({"voucher": 1.5}, known) == {"voucher": 1.5}
    # one offer at two prices: the cheaper is the one worth sending (schema-valid, so not refused)
    assert parse_offers([{"offer_type": "call", "cost": 3}, {"offer_type": "call", "cost": 2}], known) == {"call": 2.0}
    for offers, field in [
        ([], "offers"),
        ([{"offer_type": "sms", "cost": 1}], r"offers\[0\].offer_type"),
        ([{"offer_type": "call", "cost": 1}, {"offer_type": "call", "cost": 0}], r"offers\[1\].cost"),
        ([{"offer_type": "call", "cost": -1}], r"offers\[0\].cost"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}"):
            parse_offers(offers, known)


def test_offers_files_and_plan_files(tmp_path) -> None:
    (tmp_path / "offers.csv").write_text("offer_type,cost\ncall,4.5\nvoucher,2\n")
    (tmp_path / "offers.yaml").write_text("offers: {call: 4.5}\n")
    assert parse_offers(read_offers(tmp_path / "offers.csv"), list(OFFERS)) == {"call": 4.5, "voucher": 2.0}
    assert parse_offers(read_offers(tmp_path / "offers.yaml"), list(OFFERS)) == {"call": 4.5}
    with pytest.raises(ValueError, match="^offers"):
        read_offers(tmp_path / "missing.yaml")
    scored, value = _value()
    plan = build_plan(scored, value, OFFERS, 30.0, None, CFG)
    for name in ("plan.csv", "plan.parquet"):
        write_plan(plan, tmp_path / name)
    back = pd.read_parquet(tmp_path / "plan.parquet")
    assert list(back.columns) == list(plan.rows.columns) and len(back) == len(plan.rows) > 0
    assert pd.read_csv(tmp_path / "plan.csv")["customer_id"].tolist() == plan.rows["customer_id"].tolist()
    with pytest.raises(ValueError, match="^out"):
        write_plan(plan, tmp_path / "plan.txt")


def test_realised_value_uses_the_true_effects() -> None:
    rows = pd.DataFrame(
        {"customer_id": ["a", "b"], "offer_type": ["call", "voucher"], "clv": [100.0, 10.0], "cost": [8.0, 5.0]}
    )
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b"],
            "offer_type": ["call", "voucher"] * 2,
            "churn_prob_effect": [-0.2, -0.5, 0.1, -0.9],
        }
    )
    assert realised_value(rows, truth) == pytest.approx((100 * 0.2 - 8) + (10 * 0.9 - 5))


class KnownEffects(mlflow.pyfunc.PythonModel):
    """An uplift model with known effects (a test double): offer k helps by share_k x the spend percentile."""

    shares = {"discount_voucher": 0.05, "free_delivery": 0.1, "double_points": 0.15, "personal_call": 0.3}

    @property
    def model(self) -> KnownEffects:
        return self

    def effects(self, features: pd.DataFrame) -> pd.DataFrame:
        pct = features["spend_total"].astype(float).rank(pct=True).fillna(0.0).to_numpy()
        return pd.DataFrame({k: share * pct for k, share in self.shares.items()}, index=features.index)

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.effects(model_input)


@pytest.fixture(scope="module")
def plan_server(trained_workspace, refusing_customer, tmp_path_factory):
    """A server over a copy of the trained workspace with a CLV model and a known-effects uplift model registered."""
    from tests.conftest import small_workspace, start_patron_server, stop_server
    from training.mlops import tracking
    from training.value.clv import train_clv

    source = trained_workspace.settings
    ws = small_workspace(tmp_path_factory.mktemp("plan"))
    settings = ws.settings
    shutil.copytree(source.tables_dir, settings.tables_dir)
    shutil.copy2(source.workspace / "mlflow.db", settings.workspace / "mlflow.db")  # the champions, by reference
    train_clv(
        settings.model_copy(
            update={"clv": settings.clv.model_copy(update={"horizon_days": 120, "num_boost_round": 150, "folds": 3})}
        )
    )
    tracking.configure(settings)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server cannot import this test module
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=KnownEffects(), registered_model_name=settings.tracking.uplift_model
        )
    proc, server = start_patron_server(ws, tmp_path_factory.mktemp("plan_server") / "server.log")
    yield server
    stop_server(proc)


@pytest.mark.integration
def test_plan_endpoint_keeps_budget_and_consent(plan_server) -> None:
    from features.pit.build import customer_features, data_end
    from serving.answers.retention_plan import load_customer_value

    settings, http, budget = plan_server.workspace.settings, plan_server.client(timeout=120), 40.0
    cutoff = data_end(settings)
    value = load_customer_value(settings, customer_features(settings, cutoff), cutoff)
    assert value.marketing_refused & value.active  # some active customers refuse marketing
    eligible = sorted(value.active - value.marketing_refused)
    pairs = candidate_pairs(value.clv.reindex(eligible), value.effects, settings.retention.offers)
    expected = allocate(pairs, budget, None, settings.retention)
    r = http.post("/retention/plan", json={"budget": budget}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    rows, totals = body["plan"], body["totals"]
    assert totals["customers"] == len(rows) > 0
    assert sum(row["cost"] for row in rows) <= budget and totals["spend"] <= budget
    assert not {row["customer_id"] for row in rows} & value.marketing_refused
    assert {row["customer_id"] for row in rows} <= value.active
    assert len({row["customer_id"] for row in rows}) == len(rows)
    assert totals["expected_net_value"] == pytest.approx(expected.value, abs=0.01)
    assert totals["skipped_no_consent"] > 0 and set(body["model_versions"]) == {"churn", "clv", "uplift"}
    capped = http.post("/retention/plan", json={"budget": budget, "max_customers": 1}, timeout=60).json()
    assert len(capped["plan"]) == 1 and capped["plan"][0]["expected_net_value"] <= totals["expected_net_value"]
    for body, field in [
        ({"budget": -1.0}, "budget"),
        ({"budget": 5, "offers": []}, "offers"),
        ({"budget": 5, "offers": [{"offer_type": "sms", "cost": 1}]}, "offers[0].offer_type"),
    ]:
        bad = http.post("/retention/plan", json=body, timeout=60)
        assert 400 <= bad.status_code < 500 and field in bad.text, bad.text
    churn = http.post("/churn", json={"customer_ids": [rows[0]["customer_id"]]}, timeout=60).json()
    score = churn["scores"][0]
    assert score["clv"] == pytest.approx(rows[0]["clv"])
    assert score["segment"]["lifecycle_stage"] == rows[0]["lifecycle_stage"]
    assert score["best_offer"]["expected_net_value"] >= rows[0]["expected_net_value"] - 1e-9
    assert score["priority"] == "save"  # a planned customer is worth saving


@pytest.mark.integration
def test_score_churn_writes_the_best_offer_and_priority(plan_server, tmp_path) -> None:
    from serving.batch.churn import score_churn

    settings = plan_server.workspace.settings
    scores = pd.read_parquet(score_churn(settings, out=tmp_path / "scores.parquet", progress=False).path)
    assert scores["churn_probability"].is_monotonic_decreasing  # the existing order and columns stay
    assert {"reason_1", "lifecycle_stage", "value_tier", "model_version"} <= set(scores.columns)
    by = scores.groupby("priority")
    assert set(by.groups) == {"save", "likely_lost", "no_marketing_consent"}
    save, lost = by.get_group("save"), by.get_group("likely_lost")
    assert (save["expected_net_value"] > 0).all() and save["best_offer_type"].notna().all()
    assert (lost["expected_net_value"] == 0).all() and lost["best_offer_type"].isna().all()
    # the same figure as /churn's best offer (the known-effects double ranks spend within the population it is
    # given: the service's customers with features, here the active ones, so values agree to a few percent)
    first = save.sort_values("expected_net_value", ascending=False).iloc[0]
    score = plan_server.client(timeout=60).post("/churn", json={"customer_ids": [str(first["customer_id"])]}).json()
    best = score["scores"][0]["best_offer"]
    assert best["offer_type"] == first["best_offer_type"]
    assert best["expected_net_value"] == pytest.approx(first["expected_net_value"], rel=0.05)
