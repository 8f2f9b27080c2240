"""Offer uplift: Qini/AUUC, meta-learners recovering a known effect, the experiment from data, registry round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from patron.config import UpliftConfig
from training.value.uplift import UpliftModel, feature_matrix, fit_learners, mean_qini
from training.value.uplift_data import CONTROL, customer_split
from training.value.uplift_eval import auuc, effect_metrics, qini_coefficient, targeting_comparison

CFG = UpliftConfig(
    num_boost_round=200,
    early_stopping_rounds=20,
    classifier_params={
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_data_in_leaf": 50,
        "verbose": -1,
        "num_threads": 1,
    },
    regressor_params={
        "objective": "regression",
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_data_in_leaf": 50,
        "verbose": -1,
        "num_threads": 1,
    },
)


def simulated(n: int = 12000, seed: int = 0) -> pd.DataFrame:
    """Randomised offers: 'voucher' cuts P(churn) by 0.3 for customers with x > 0 only; 'mug' does nothing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    noise = rng.normal(size=n)
    channel = pd.Categorical(rng.choice(["app", "store"], n), categories=["app", "online", "store"])
    arm = rng.choice([CONTROL, "voucher", "mug"], n, p=[0.5, 0.25, 0.25])
    p = 0.5 - 0.3 * ((arm == "voucher") & (x > 0))
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "cutoff": pd.Timestamp("2025-01-01"),
            "x": x,
            "noise": noise,
            "channel": channel,
            "offer_type": arm,
            "churned": (rng.random(n) < p).astype(int),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[dict[str, UpliftModel], pd.DataFrame]:
    frame = simulated()
    split = customer_split(frame["customer_id"], CFG)
    frame = frame.assign(split=split)
    models = fit_learners(frame[split == "train"], frame[split == "valid"], CFG)
    return models, frame[split == "test"]


def test_qini_orders_perfect_random_and_reversed_rankings() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    treated = rng.random(n) < 0.5
    helped = rng.random(n) < 0.5
    retained = np.where(treated & helped, 1, rng.random(n) < 0.4).astype(int)
    good = qini_coefficient(helped.astype(float), treated, retained)
    bad = qini_coefficient(-helped.astype(float), treated, retained)
    noise = qini_coefficient(rng.random(n), treated, retained)
    assert good > 0.05 > abs(noise)
    assert bad < -0.05
    assert auuc(helped.astype(float), treated, retained) > auuc(-helped.astype(float), treated, retained)
    with pytest.raises(ValueError, match="treated and control"):
        qini_coefficient(np.zeros(3), np.ones(3, bool), np.ones(3))


@pytest.mark.parametrize("learner", ["t", "offset", "x"])
def test_learner_recovers_effect_sign_and_ranking(fitted, learner: str) -> None:
    models, test = fitted
    model = models[learner]
    assert model.offer_types == ["mug", "voucher"]
    est = model.effects(feature_matrix(test))
    assert list(est.columns) == ["mug", "voucher"] and est.index.equals(test.index)
    pos = test["x"] > 0
    assert est.loc[pos, "voucher"].mean() > 0.2  # true effect 0.3
    assert abs(est.loc[~pos, "voucher"].mean()) < 0.1  # true effect 0
    assert est.loc[pos, "voucher"].mean() > est.loc[pos, "mug"].mean() + 0.15
    metrics = effect_metrics(est, test["offer_type"].to_numpy(), test["churned"].to_numpy(), 50)
    assert metrics["qini_voucher"] > 0 and metrics["qini_best_offer"] > 0
    assert mean_qini(model, test, 50) > 0
    baseline = model.baseline(feature_matrix(test))
    assert baseline.between(0.35, 0.65).all()  # P(churn) without an offer is 0.5 for everyone


def test_save_load_round_trip_and_json_inputs(fitted, tmp_path: Path) -> None:
    models, test = fitted
    X = feature_matrix(test)
    for model in models.values():
        loaded = UpliftModel.load(model.save(tmp_path / model.learner))
        pd.testing.assert_frame_equal(loaded.effects(X), model.effects(X))
        as_json = X.assign(channel=X["channel"].astype(str))  # category dtype lost, as through a JSON request
        pd.testing.assert_frame_equal(loaded.effects(as_json), model.effects(X))
    with pytest.raises(ValueError, match="noise"):
        models["t"].effects(X.drop(columns="noise"))


def test_uplift_targeting_beats_risk_targeting_under_true_effects(fitted) -> None:
    models, test = fitted
    est = models["x"].effects(feature_matrix(test))
    truth = pd.DataFrame({"mug": 0.0, "voucher": 0.3 * (test["x"] > 0)}, index=test.index)
    risk = np.full(len(test), 0.5) + 0.01 * test["noise"].to_numpy()  # risk unrelated to the effect
    res = targeting_comparison(est, risk, truth, np.ones(len(test)), 0.3, "voucher", seed=0)
    assert res["oracle"] >= res["uplift"] > res["risk"]
    assert res["ratio_uplift_to_risk"] > 1.3


def test_customer_split_is_disjoint_and_seeded() -> None:
    ids = pd.Series([f"C{i % 50}" for i in range(500)])
    split = customer_split(ids, CFG)
    by_customer = pd.Series(split).groupby(ids).nunique()
    assert (by_customer == 1).all()
    assert set(split) == {"train", "valid", "test"}
    assert (customer_split(ids, CFG) == split).all()


def test_train_uplift_registers_and_champion_loads(ingested_workspace) -> None:
    from mlflow.exceptions import MlflowException

    from features.pit import build
    from serving.champions.load import load_uplift_champion
    from training.mlops import tracking
    from training.value.uplift import train_uplift
    from training.value.uplift_data import experiment

    settings = ingested_workspace.settings
    settings = settings.model_copy(update={"uplift": settings.uplift.model_copy(update={"learners": ["offset"]})})
    frame = experiment(settings)
    # The experiment follows the simulator's campaign rule: every randomised offer on those days is a treated row.
    offers = pd.read_parquet(settings.tables_dir / "offers.parquet")
    days = frame["cutoff"].unique()
    sent = offers[pd.to_datetime(offers["sent_at"]).dt.normalize().isin(days) & offers["randomized"]]
    assert (frame["offer_type"] != CONTROL).sum() == len(sent)
    assert not frame.duplicated(["cutoff", "customer_id"]).any()
    client = tracking.configure(settings)
    name, alias = settings.tracking.uplift_model, settings.tracking.champion_alias
    try:
        had_champion = bool(client.get_model_version_by_alias(name, alias))
    except MlflowException:
        had_champion = False
    result = train_uplift(settings, frame)
    assert result.model_version >= 1 and np.isfinite(result.metrics["qini_best_offer"])
    model, version = load_uplift_champion(settings)
    assert version == str(client.get_model_version_by_alias(name, alias).version)
    if not had_champion:  # the first registered version becomes champion
        assert version == str(result.model_version) and model.learner == "offset"
    feats = build.customer_features(settings, build.data_end(settings))
    effects = model.effects(feats)
    assert list(effects.columns) == sorted(offers["offer_type"].unique())
    assert len(effects) == len(feats) and effects.notna().all().all()


def test_bench_repeats_the_fit_on_other_customer_splits(ingested_workspace, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from benchmarks.uplift import bench_uplift, split_results
    from training.mlops.tracking import flat_params

    settings = ingested_workspace.settings
    fast = {"learners": ["t", "offset"], "bench_splits": 3, "num_boost_round": 60, "early_stopping_rounds": 10}
    settings = settings.model_copy(update={"uplift": settings.uplift.model_copy(update=fast)})
    results = split_results(settings)
    assert len(results) == 3
    tests = [frozenset(r.fit.rows("test")["customer_id"]) for r in results]
    assert len(set(tests)) == 3  # each split holds out other customers
    for r in results:
        by_customer = r.fit.frame.groupby("customer_id")["split"].nunique()
        assert (by_customer == 1).all()
        assert r.weighted["uplift"] <= r.weighted["oracle"] and r.counted["uplift"] <= r.counted["oracle"]
    report, metrics = bench_uplift(settings)
    ratios = sorted(r.weighted["ratio_uplift_to_risk"] for r in results)
    assert metrics["splits_value_ratio_median"] == pytest.approx(ratios[1])
    assert metrics["splits_value_ratio_min"] == pytest.approx(ratios[0])
    assert metrics["value_ratio_uplift_to_risk"] == pytest.approx(results[0].weighted["ratio_uplift_to_risk"])
    assert report.protocol["customer_splits"] == 3
    assert any(row["model"].startswith("median of 3 customer splits") for row in report.rows)
    # its MLflow run (in a scratch store): the flat metrics under their names, the uplift section as params
    scratch = settings.model_copy(update={"workspace": tmp_path})
    report.write(tmp_path / "bench", "uplift_bench", scratch, flat_params(settings.uplift, "uplift"))
    run = MlflowClient(scratch.tracking_uri).get_run(report.run_id)
    assert run.data.metrics["splits_value_ratio_median"] == pytest.approx(metrics["splits_value_ratio_median"])
    assert run.data.params["uplift.bench_splits"] == "3" and run.data.params["customer_splits"] == "3"
