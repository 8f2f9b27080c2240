"""The synthetic retailer answers a campaign: its customers live on for the campaign's outcome window, the treated
ones under the generator's true offer effects, the holdout under none, and the purchases join the events table.

Playing forward uses each customer's latent traits from the ground truth: dropout hazard exp(logh0 - w_mood x mood)
(the dynamic terms of the day-by-day simulator, dissatisfaction, price shocks, tier and engagement, are left at zero),
times exp(the offer's log-hazard effect) for `synth.offer_effect_days` after the send day for treated customers, and
purchases at the customer's purchase rate until dropout. Customers who dropped out before the send day buy nothing.
The same rates give each campaign customer's true P(retained) with and without the offer (a purchase in the window;
closed form for a piecewise-constant hazard), written to ground_truth/campaigns/<id>.parquet: the readout's check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.synthetic.world import Dynamics
from features.tables.campaigns import TREATMENT, read_campaign
from features.tables.store import read_table, table_path, write_parquets
from patron.config import Settings

TRUTH_COLUMNS = ["customer_id", "arm", "offer_type", "p_retained_no_offer", "p_retained_offer", "true_effect"]


@dataclass(frozen=True)
class Played:
    """What playing a campaign forward added."""

    purchases: pd.DataFrame  # customer_id, ts (days after start as timestamps), item_id, unit_price, channel
    redeemed: pd.DataFrame  # customer_id, redeemed_at
    truth: pd.DataFrame  # TRUTH_COLUMNS, one row per campaign customer

    def summary(self, cid: str) -> str:
        """One line for the command line."""
        by = self.truth.groupby("offer_type")["true_effect"].mean()
        effects = ", ".join(f"{k} {v * 100:+.1f} pts" for k, v in by.items())
        return (
            f"campaign {cid} played forward: {len(self.purchases):,} purchases, {len(self.redeemed):,} offers "
            f"redeemed; true mean effect on retention per offer: {effects}"
        )


def _p_retained(h: np.ndarray, eff: np.ndarray, r: np.ndarray, window: float, effect_days: float) -> np.ndarray:
    """P(a purchase in [0, window)): purchases at rate r while alive; hazard h x exp(eff) until effect_days, h after."""
    first = min(effect_days, window)
    q, p_none = np.ones_like(h), np.zeros_like(h)
    for length, lam in ((first, h * np.exp(eff)), (window - first, h)):
        a = lam + r
        p_none += q * np.divide(lam, a, out=np.zeros_like(a), where=a > 0) * -np.expm1(-a * length)
        q = q * np.exp(-a * length)
    return 1 - (p_none + q)


def play_forward(
    customers: pd.DataFrame,
    campaign: pd.DataFrame,
    start: pd.Timestamp,
    window_days: int,
    effect_days: int,
    redemption: float,
    rng: np.random.Generator,
) -> Played:
    """Simulate `window_days` from `start` for every customer of the ground truth (customers: customer_id, hazard,
    purchase_rate, preferred_channel, alive; campaign: customer_id, arm, offer_type, log_hazard_effect)."""
    people = customers.set_index("customer_id")
    by_id = campaign.set_index("customer_id")
    treated = by_id["arm"].reindex(people.index).eq(TREATMENT).to_numpy()
    eff = np.where(treated, by_id["log_hazard_effect"].reindex(people.index).fillna(0).to_numpy(float), 0.0)
    h, r = people["hazard"].to_numpy(float), people["purchase_rate"].to_numpy(float)
    alive = people["alive"].to_numpy(bool)
    lam1 = h * np.exp(eff)
    u = rng.exponential(size=len(h))
    dropout = np.where(u < lam1 * effect_days, u / lam1, effect_days + (u - lam1 * effect_days) / h)
    life = np.where(alive, np.minimum(dropout, window_days), 0.0)
    counts = rng.poisson(r * life)
    who = np.repeat(np.arange(len(h)), counts)
    when = rng.random(len(who)) * life[who]
    purchases = pd.DataFrame(
        {
            "customer_id": people.index.to_numpy()[who],
            "ts": start + pd.to_timedelta(when, unit="D"),
            "channel": people["preferred_channel"].to_numpy()[who],
        }
    ).sort_values("ts", ignore_index=True)
    first = purchases.drop_duplicates("customer_id").set_index("customer_id")["ts"]
    in_offer = first[first < start + pd.Timedelta(days=effect_days)]
    candidates = in_offer[in_offer.index.isin(by_id.index[by_id["arm"] == TREATMENT])]
    keep = rng.random(len(candidates)) < redemption
    redeemed = pd.DataFrame({"customer_id": candidates.index[keep], "redeemed_at": candidates.to_numpy()[keep]})
    sub = people.reindex(by_id.index)
    h_c, r_c = sub["hazard"].to_numpy(float), sub["purchase_rate"].to_numpy(float)
    on = _p_retained(h_c, by_id["log_hazard_effect"].to_numpy(float), r_c, window_days, effect_days)
    off = _p_retained(h_c, np.zeros(len(h_c)), r_c, window_days, effect_days)
    alive_c = sub["alive"].to_numpy(bool)
    on, off = np.where(alive_c, on, 0.0), np.where(alive_c, off, 0.0)
    truth = pd.DataFrame(
        {
            "customer_id": by_id.index.to_numpy(),
            "arm": by_id["arm"].to_numpy(),
            "offer_type": by_id["offer_type"].to_numpy(),
            "p_retained_no_offer": off,
            "p_retained_offer": on,
            "true_effect": on - off,
        },
        columns=TRUTH_COLUMNS,
    )
    return Played(purchases, redeemed, truth)


def truth_inputs(
    settings: Settings, assignment: pd.DataFrame, start: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ground truth's customers (hazard, purchase rate, channel, alive at start) and the campaign's customers
    with the true log-hazard effect of their planned offer."""
    gt = settings.ground_truth_dir
    if not (gt / "customers_truth.parquet").is_file():
        raise FileNotFoundError(f"{gt}/customers_truth.parquet is missing: only a synthetic retailer can play along")
    dyn = Dynamics()
    truth = pd.read_parquet(gt / "customers_truth.parquet")
    hazard = np.minimum(truth["base_hazard"] * np.exp(-dyn.w_mood * truth["mood"]), dyn.hazard_max)
    customers = pd.DataFrame(
        {
            "customer_id": truth["customer_id"].astype(str),
            "hazard": hazard.to_numpy(float),
            "purchase_rate": truth["purchase_rate"].to_numpy(float),
            "preferred_channel": truth["preferred_channel"].astype(str),
            "alive": (truth["churn_date"].isna() | (truth["churn_date"] >= start)).to_numpy(),
        }
    )
    effects = pd.read_parquet(
        gt / "treatment_effects.parquet", columns=["customer_id", "offer_type", "log_hazard_effect"]
    )
    campaign = (
        assignment[["customer_id", "arm", "offer_type"]]
        .astype({"customer_id": str})
        .merge(effects.astype({"customer_id": str}), on=["customer_id", "offer_type"], how="left", validate="1:1")
    )
    if campaign["log_hazard_effect"].isna().any():
        raise ValueError("campaign: some customers have no true offer effect in the ground truth")
    return customers, campaign


def _events(settings: Settings, purchases: pd.DataFrame, cid: str, seed: int) -> pd.DataFrame:
    """Purchases as events rows: an in-stock item drawn at random, one unit at its list price, one order each."""
    products = read_table(settings.tables_dir, "products")
    items = products[products["in_stock"].astype(bool)] if "in_stock" in products else products
    pick = np.random.default_rng([seed, 1]).integers(0, len(items), len(purchases))
    price = items["unit_price"].to_numpy(float)[pick] if "unit_price" in items else np.full(len(pick), np.nan)
    n = np.arange(1, len(purchases) + 1)
    return pd.DataFrame(
        {
            "event_id": [f"{cid}-e{k}" for k in n],
            "customer_id": purchases["customer_id"].to_numpy(),
            "item_id": items["item_id"].to_numpy()[pick],
            "ts": purchases["ts"].to_numpy(),
            "type": "purchase",
            "quantity": pd.array(np.ones(len(n), int), dtype="Int64"),
            "unit_price": price,
            "channel": purchases["channel"].to_numpy(),
            "order_id": [f"{cid}-o{k}" for k in n],
        }
    )


def play_campaign(settings: Settings, cid: str, seed: int | None = None) -> Played:
    """Play campaign `cid` forward: purchases appended to the events table, redemptions to its offers, the true
    effects to ground_truth/campaigns/<cid>.parquet, all or none (a campaign plays once)."""
    campaign = read_campaign(settings.campaigns_dir, cid)
    out = settings.ground_truth_dir / "campaigns" / f"{campaign.id}.parquet"
    if out.exists():
        raise ValueError(f"campaign id: {campaign.id!r} was already played forward ({out})")
    seed = settings.seed if seed is None else seed
    customers, assigned = truth_inputs(settings, campaign.assignment, campaign.sent_at)
    played = play_forward(
        customers,
        assigned,
        campaign.sent_at,
        int(campaign.meta["outcome_days"]),
        settings.synth.offer_effect_days,
        settings.synth.campaign_redemption,
        np.random.default_rng([seed, 27]),
    )
    events = read_table(settings.tables_dir, "events")
    new = _events(settings, played.purchases, campaign.id, seed).astype(events.dtypes.to_dict())
    offers = read_table(settings.tables_dir, "offers")
    mine = offers["offer_id"].astype(str).str.startswith(f"{campaign.id}:")
    when = offers.loc[mine, "customer_id"].astype(str).map(played.redeemed.set_index("customer_id")["redeemed_at"])
    offers.loc[mine, "redeemed_at"] = when.astype(offers["redeemed_at"].dtype)
    write_parquets(
        {
            table_path(settings.tables_dir, "events"): pd.concat([events, new], ignore_index=True),
            table_path(settings.tables_dir, "offers"): offers,
            out: played.truth,
        }
    )
    return played
