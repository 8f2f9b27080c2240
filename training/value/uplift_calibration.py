"""Calibrating the uplift model's effects on held-out randomised customers, so the plan's expected value is honest.

Per-customer effects from a few thousand randomised offers are mostly noise: the customers with the largest
estimates are largely those whose estimate erred upwards, and a plan that picks them expects more than it gets. The
calibration shrinks every estimate toward its offer's average estimate:

    tau_cal_k(x) = centre_k + slope_k * (tau_k(x) - centre_k)

centre_k is the model's mean estimate of offer k on the training customers, and slope_k how much of the estimates
the held-out (validation) customers' outcomes bear out: the interaction coefficient of a least-squares fit of
retention on the arm (offer k or control), the centred estimate and their product, clipped to [0, 1]; 1 keeps the
estimates, 0 leaves only the offer's average. One slope per offer: pooled, an offer whose estimates are pure noise
would drag down one whose are real. (Shrinking toward each offer's randomised difference in churn rates instead was
tried: with ~1,000 treated customers per offer that average is itself too noisy, and on the demo retailer it turned
the plan's realised value negative.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.value.uplift_data import CONTROL, LABEL, TREATMENT


@dataclass(frozen=True)
class EffectCalibration:
    """tau_cal_k(x) = centre[k] + slope[k] x (tau_k(x) - centre[k])."""

    centre: dict[str, float]
    slope: dict[str, float]

    def apply(self, effects: pd.DataFrame) -> pd.DataFrame:
        """Calibrated effects, same shape (offer types without a calibration are left as they are)."""
        out = effects.copy()
        for k in effects.columns:
            if k in self.centre:
                out[k] = self.centre[k] + self.slope[k] * (effects[k] - self.centre[k])
        return out

    def to_dict(self) -> dict:
        """JSON-ready form (UpliftModel.save)."""
        return {"centre": self.centre, "slope": self.slope}

    @classmethod
    def from_dict(cls, data: dict) -> EffectCalibration:
        """The form `to_dict` wrote."""
        return cls({k: float(v) for k, v in data["centre"].items()}, {k: float(v) for k, v in data["slope"].items()})


def randomised_ate(rows: pd.DataFrame, offer: str) -> float:
    """Offer's average reduction in churn in the experiment rows: churn rate of control minus that of the offer."""
    churned = rows[LABEL].astype(float)
    arm = rows[TREATMENT]
    if not (arm == offer).any() or not (arm == CONTROL).any():
        return 0.0
    return float(churned[arm == CONTROL].mean() - churned[arm == offer].mean())


def calibration_slope(estimates: pd.Series, centre: float, offer: str, rows: pd.DataFrame) -> float:
    """How much of offer's estimated effects its and control's held-out rows bear out, clipped to [0, 1] (0 without
    both arms): the coefficient s of the least-squares fit retained ~ a + b W + c d + s W d, W = sent the offer,
    d = the centred estimate, so that the effect among customers with estimate d is b + s d."""
    arm = rows[TREATMENT].to_numpy()
    keep = (arm == offer) | (arm == CONTROL)
    treated = (arm[keep] == offer).astype(float)
    if treated.all() or not treated.any():
        return 0.0
    retained = 1.0 - rows[LABEL].to_numpy(float)[keep]
    d = estimates.to_numpy(float)[keep] - centre
    design = np.column_stack([np.ones_like(d), treated, d, treated * d])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return 0.0
    coef = np.linalg.lstsq(design, retained, rcond=None)[0]
    return float(np.clip(coef[3], 0.0, 1.0))


def fit_calibration(
    train_estimates: pd.DataFrame, held_estimates: pd.DataFrame, held_out: pd.DataFrame
) -> EffectCalibration:
    """The calibration: centres from the training customers' estimates, the slope from held-out customers' rows.

    Estimates are the uncalibrated model's effects on those rows, one column per offer type, in row order.
    """
    centre = {str(k): float(train_estimates[k].mean()) for k in train_estimates.columns}
    slope = {k: calibration_slope(held_estimates[k], c, k, held_out) for k, c in centre.items()}
    return EffectCalibration(centre, slope)
