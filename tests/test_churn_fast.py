"""The precomputed /churn answers (serving/answers/churn_table.py) equal per-request scoring, reasons and their
order included."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from patron.config import load_settings
from serving.answers.churn_scoring import score_customers
from serving.answers.churn_table import ChurnTable, ExtrasTable
from training.churn.model import ChurnModel, categorical_columns


@pytest.fixture(scope="module")
def frame_and_booster() -> tuple[pd.DataFrame, ChurnModel]:
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "days_since_last_purchase": rng.uniform(0, 150, n),
            "gap_mean_days": rng.uniform(10, 40, n),
            "orders_total": rng.integers(1, 30, n).astype(float),
            "open_tickets": rng.integers(0, 3, n).astype(float),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], n)),
        }
    )
    df.loc[df.index % 9 == 0, "gap_mean_days"] = np.nan  # missing values render as "no ... on record"
    y = (
        df["days_since_last_purchase"] / df["gap_mean_days"].fillna(25) + df["open_tickets"] + rng.normal(0, 0.5, n) > 3
    ).astype(int)
    X = df.drop(columns="customer_id")
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 0, "min_data_in_leaf": 10}, lgb.Dataset(X, y), num_boost_round=30
    )
    return df, ChurnModel(booster, None, categorical_columns(X))  # no calibrator: probabilities are the booster's


def test_table_answers_equal_per_request_scoring_in_request_order(frame_and_booster):
    df, booster = frame_and_booster
    churn = load_settings().churn
    table = ChurnTable(booster, df, churn)
    assert not table._explained.any()  # reasons are computed on first use only
    ids = df["customer_id"].sample(60, random_state=2).tolist()
    for c in ids[:20]:  # one customer per request, as the storefront asks
        assert table.scores([c]) == score_customers(booster, df, [c], churn)
    assert table._explained.sum() == 20
    # several per request, with an unknown id and a repeat: already explained rows and new ones answer alike
    many = ids + ["nobody", ids[0]]
    answer = table.scores(many)
    assert answer == score_customers(booster, df, many, churn)
    assert [a["customer_id"] for a in answer] == many and answer[-2]["known"] is False
    assert any(len(a["reasons"]) > 1 for a in answer)  # the order of several reasons is compared too


def test_table_with_the_trained_champion_equals_score_customers(trained_workspace):
    from features.pit.build import customer_features, data_end
    from serving.champions.load import load_churn_champion

    settings = trained_workspace.settings
    booster, _ = load_churn_champion(settings)
    features = customer_features(settings, data_end(settings))
    table = ChurnTable(booster, features, settings.churn)
    ids = features["customer_id"].astype(str).sample(80, random_state=0).tolist()
    assert [table.scores([c])[0] for c in ids] == score_customers(booster, features, ids, settings.churn)
    assert table.scores(ids[::-1]) == score_customers(booster, features, ids[::-1], settings.churn)


def test_extras_table_gives_each_customer_a_fresh_copy_and_nothing_for_unknown_ids():
    calls = []

    def extras_of(ids: list[str]) -> list[dict]:
        calls.append(list(ids))
        return [
            {"clv": float(len(c)), "best_offer": None, "segment": {"value_tier": c[-1]}} if c != "x" else {}
            for c in ids
        ]

    table = ExtrasTable(extras_of, ["ab", "cde", "ab", "x"])
    assert calls == [["ab", "cde", "x"]]  # computed once, all customers in one call
    out = table.extras(["cde", "nobody", "x", "ab"])
    assert out == [
        {"clv": 3.0, "best_offer": None, "segment": {"value_tier": "e"}},
        {},
        {},
        {"clv": 2.0, "best_offer": None, "segment": {"value_tier": "b"}},
    ]
    out[0]["segment"]["value_tier"] = "changed"
    assert table.extras(["cde"])[0]["segment"] == {"value_tier": "e"}
