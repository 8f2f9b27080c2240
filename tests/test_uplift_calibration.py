"""Calibration of offer effects on held-out randomised customers: the slope, the shrinkage and its round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_uplift import CFG, simulated
from training.value.uplift import UpliftModel, feature_matrix, fit_learners
from training.value.uplift_calibration import EffectCalibration, calibration_slope, fit_calibration, randomised_ate
from training.value.uplift_data import customer_split


def _true_effects(frame: pd.DataFrame) -> pd.DataFrame:
    """The simulation's truth: voucher cuts P(churn) by 0.3 where x > 0, mug does nothing."""
    return pd.DataFrame({"voucher": 0.3 * (frame["x"] > 0), "mug": 0.0}, index=frame.index).astype(float)


def test_the_slope_keeps_true_effects_and_drops_noise() -> None:
    held = simulated(n=40000, seed=1)
    truth = _true_effects(held)
    voucher = truth["voucher"]
    assert calibration_slope(voucher, voucher.mean(), "voucher", held) == pytest.approx(1.0, abs=0.1)
    noise = pd.Series(np.random.default_rng(2).normal(0, 0.2, len(held)))
    assert calibration_slope(noise, 0.0, "voucher", held) < 0.1
    assert calibration_slope(noise, 0.0, "mug", held) < 0.1
    doubled = voucher * 2  # estimates twice the true effects: worth half of them
    assert calibration_slope(doubled, doubled.mean(), "voucher", held) == pytest.approx(0.5, abs=0.06)
    assert calibration_slope(voucher, 0.0, "sms", held) == 0.0  # nobody got that offer
    assert randomised_ate(held, "voucher") == pytest.approx(0.15, abs=0.02)
    assert randomised_ate(held, "mug") == pytest.approx(0.0, abs=0.02)


def test_calibration_shrinks_toward_each_offers_centre_and_round_trips(tmp_path: Path) -> None:
    cal = EffectCalibration({"voucher": 0.1, "mug": 0.0}, {"voucher": 0.5, "mug": 0.5})
    raw = pd.DataFrame({"voucher": [0.1, 0.3, -0.1], "mug": [0.2, 0.0, 0.0], "other": [1.0, 2.0, 3.0]})
    out = cal.apply(raw)
    assert out["voucher"].tolist() == pytest.approx([0.1, 0.2, 0.0])
    assert out["mug"].tolist() == pytest.approx([0.1, 0.0, 0.0])
    assert out["other"].tolist() == [1.0, 2.0, 3.0]  # an offer without a calibration is left as it is
    assert EffectCalibration.from_dict(cal.to_dict()) == cal

    frame = simulated(n=6000, seed=3)
    split = customer_split(frame["customer_id"], CFG)
    frame = frame.assign(split=split)
    train, valid = frame[split == "train"], frame[split == "valid"]
    model = fit_learners(train, valid, CFG)["t"]
    calibration = fit_calibration(
        model.raw_effects(feature_matrix(train)), model.raw_effects(feature_matrix(valid)), valid
    )
    assert calibration.slope["voucher"] > 0.6  # the voucher's effect is real: its estimates are kept
    assert calibration.slope["mug"] < calibration.slope["voucher"]
    model.calibration = calibration
    X = feature_matrix(frame[split == "test"])
    calibrated = model.effects(X)
    assert calibrated["voucher"].std() == pytest.approx(
        calibration.slope["voucher"] * model.raw_effects(X)["voucher"].std()
    )
    loaded = UpliftModel.load(model.save(tmp_path / "t"))
    assert loaded.calibration == calibration
    pd.testing.assert_frame_equal(loaded.effects(X), calibrated)


def test_the_bench_sets_the_observed_label_effect_beside_the_generators() -> None:
    from benchmarks.plan_calibration import observed_vs_generator

    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
            "offer_type": ["voucher", "voucher", "call", "call"] + ["control"] * 6,
            "churned": [0, 1, 0, 0, 1, 1, 0, 0, 1, 0],
        }
    )
    truth = pd.DataFrame(
        {
            "customer_id": [c for c in "abcdefghij" for _ in range(2)],
            "offer_type": ["voucher", "call"] * 10,
            "churn_prob_effect": [-0.1, -0.3] * 10,  # negative helps
        }
    )
    out = observed_vs_generator(frame, truth)
    assert out["observed_effect"] == pytest.approx(3 / 6 - 1 / 4)  # control churn minus treated churn
    assert out["generator_effect"] == pytest.approx((0.1 + 0.1 + 0.3 + 0.3) / 4)
    assert out["treated_rows"] == 4 and out["observed_effect_se"] > 0
