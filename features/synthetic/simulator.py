"""Day-by-day dynamics of simulated customers: funnel, re-buys, experiences, tickets, offers and dropout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic.world import NEVER, Catalog, Dynamics, Population, sample_items
from features.tables.contract import CHANNELS, EVENT_TYPES, OFFER_TYPES, TICKET_CATEGORIES

VIEW, CART, PURCHASE, RETURN = (EVENT_TYPES.index(t) for t in ("view", "cart", "purchase", "return"))
STORE = CHANNELS.index("store")


@dataclass(frozen=True)
class Campaigns:
    """How the retailer runs randomised retention campaigns."""

    every_days: int
    share: float
    effect_days: int
    lookback_days: int


@dataclass
class State:
    """The dynamic latent state of a chunk of customers."""

    alive: np.ndarray
    dropout_day: np.ndarray
    dissat: np.ndarray  # accumulated, decaying dissatisfaction (log-hazard units)
    price_shock: np.ndarray  # felt price rises (log-hazard units before weighting)
    engagement: np.ndarray  # decaying count of purchase days
    points: np.ndarray
    tier: np.ndarray
    last_purchase: np.ndarray
    shocks: np.ndarray  # (customer, day mod window) experiences scheduled ahead
    offer_type: np.ndarray
    offer_until: np.ndarray
    due: np.ndarray  # (customer, consumable category) day the next re-buy is due
    rebuy: np.ndarray  # (customer, consumable category) item re-bought
    comp_item: np.ndarray  # accessory the customer will come back for
    comp_day: np.ndarray
    owned: np.ndarray  # (customer, slot) durables bought lately, not bought again
    owned_next: np.ndarray


def new_state(n: int, n_consumables: int, dyn: Dynamics) -> State:
    """Everyone alive, nothing bought yet."""
    return State(
        alive=np.ones(n, bool),
        dropout_day=np.full(n, NEVER, np.int32),
        dissat=np.zeros(n, np.float32),
        price_shock=np.zeros(n, np.float32),
        engagement=np.zeros(n, np.float32),
        points=np.zeros(n, np.int64),
        tier=np.zeros(n, np.int8),
        last_purchase=np.full(n, -NEVER, np.int32),
        shocks=np.zeros((n, dyn.shock_window), np.float32),
        offer_type=np.full(n, -1, np.int8),
        offer_until=np.zeros(n, np.int32),
        due=np.full((n, n_consumables), NEVER, np.int32),
        rebuy=np.full((n, n_consumables), -1, np.int32),
        comp_item=np.full(n, -1, np.int32),
        comp_day=np.full(n, NEVER, np.int32),
        owned=np.full((n, dyn.owned_slots), -1, np.int32),
        owned_next=np.zeros(n, np.int8),
    )


class Simulator:
    """Steps a chunk of customers one day at a time; the optional recorder only observes (never draws from `rng`)."""

    def __init__(
        self,
        cat: Catalog,
        pop: Population,
        state: State,
        dyn: Dynamics,
        camp: Campaigns,
        rng: np.random.Generator,
        recorder=None,
    ) -> None:
        self.cat, self.pop, self.st, self.dyn, self.camp, self.rng, self.rec = cat, pop, state, dyn, camp, rng, recorder
        self.sens = (pop.level / (len(dyn.price_levels) - 1)).astype(np.float32)
        self.decay = {
            k: np.float32(0.5 ** (1 / getattr(dyn, f"{k}_half_life"))) for k in ("dissat", "price_shock", "engagement")
        }
        self.rows = np.arange(len(pop.rate))

    def hazard(self, d: int) -> np.ndarray:
        """Today's daily dropout probability for every customer of the chunk."""
        st, pop, dyn = self.st, self.pop, self.dyn
        on = (st.offer_type >= 0) & (d < st.offer_until)
        eff = np.where(on, pop.effect[self.rows, np.maximum(st.offer_type, 0)], 0)
        logh = (
            pop.logh0
            + dyn.w_dissat * st.dissat
            + dyn.w_price * st.price_shock
            - dyn.w_tier * st.tier
            - dyn.w_engagement * np.log1p(st.engagement)
            - dyn.w_mood * pop.mood
            + eff
        )
        return np.minimum(np.exp(logh), dyn.hazard_max)

    def step(self, d: int) -> np.ndarray:
        """Simulate day `d`; returns which customers purchased."""
        st, pop, dyn, rng, cat = self.st, self.pop, self.dyn, self.rng, self.cat
        n = len(st.alive)
        slot = d % dyn.shock_window
        st.dissat = st.dissat * self.decay["dissat"] + st.shocks[:, slot]
        st.shocks[:, slot] = 0
        st.price_shock *= self.decay["price_shock"]
        st.engagement *= self.decay["engagement"]
        live = st.alive & (pop.signup_day <= d)
        for c, rise in cat.price_events.get(d, ()):
            bump = dyn.price_shock_weight * rise * self.sens * pop.taste[:, c]
            st.price_shock += bump
            self._tickets(np.flatnonzero(live & (rng.random(n) < dyn.price_ticket_scale * bump)), d, d, "price")
        h = self.hazard(d)
        drop = live & (rng.random(n) < h)
        st.alive[drop] = False
        st.dropout_day[drop] = d
        live &= ~drop
        if d % self.camp.every_days == self.camp.every_days // 2:
            self._campaign(d, live)
        self._tickets(np.flatnonzero(live & (rng.random(n) < dyn.other_ticket_prob)), d, d, "other")
        if self.rec is not None:
            self.rec.day(d, live, h, st, pop)
        # Browsing sessions: views drawn from the customer's taste, then cart, then purchase if in stock.
        s = np.flatnonzero(live & (rng.random(n) < pop.rate))
        vc = np.repeat(s, 1 + rng.poisson(dyn.extra_views_per_session, len(s)))
        vcat = np.minimum((rng.random(len(vc))[:, None] > pop.taste_cum[vc]).sum(1), cat.n_categories - 1)
        vitem = sample_items(cat, pop.level[vc], vcat, rng.random(len(vc)))
        listed = cat.launch_day[vitem] <= d
        vc, vitem = vc[listed], vitem[listed]
        carted = rng.random(len(vc)) < dyn.cart_prob
        owns = (st.owned[vc] == vitem[:, None]).any(1)
        vbuy = carted & ~cat.oos[d, vitem] & (rng.random(len(vc)) < dyn.buy_prob) & ~owns
        missed = carted & cat.oos[d, vitem]
        # Directed visits: consumables due for a re-buy, accessories the customer meant to come back for.
        li = np.flatnonzero(live)
        r, k = np.nonzero(st.due[li] <= d)
        rc, ritem = li[r], st.rebuy[li[r], k]
        go = rng.random(len(rc)) < dyn.rebuy_prob
        st.due[rc[~go], k[~go]] = d + dyn.rebuy_postpone_days
        rc, ritem, k = rc[go], ritem[go], k[go]
        st.due[rc[cat.oos[d, ritem]], k[cat.oos[d, ritem]]] = d + dyn.rebuy_postpone_days
        cc = np.flatnonzero(live & (st.comp_day == d))
        citem = st.comp_item[cc]
        st.comp_day[cc] = NEVER
        ok = cat.launch_day[citem] <= d
        dc, ditem = np.concatenate([rc, cc[ok]]), np.concatenate([ritem, citem[ok]])
        dbuy = ~cat.oos[d, ditem]
        pc, pitem = np.concatenate([vc[vbuy], dc[dbuy]]), np.concatenate([vitem[vbuy], ditem[dbuy]])
        # Complements: bought in the same order, or scheduled for a later visit.
        acc = cat.complement[pitem]
        u = rng.random(len(pc))
        avail = (
            (acc >= 0)
            & (cat.launch_day[acc] <= d)
            & ~cat.oos[d, np.maximum(acc, 0)]
            & ~(st.owned[pc] == acc[:, None]).any(1)
        )
        same = avail & (u < dyn.complement_same_order)
        later = (acc >= 0) & ~same & (u < dyn.complement_same_order + dyn.complement_later)
        st.comp_item[pc[later]] = acc[later]
        st.comp_day[pc[later]] = d + rng.integers(1, dyn.complement_max_delay + 1, later.sum())
        xc, xitem = pc[same], acc[same]
        pc, pitem = np.concatenate([pc, xc]), np.concatenate([pitem, xitem])
        # Stock-outs met at the cart.
        sc = np.concatenate([vc[missed], dc[~dbuy]])
        np.add.at(st.dissat, sc, dyn.shock_stockout)
        self._tickets(sc[rng.random(len(sc)) < dyn.stockout_ticket_prob], d, d, "stock_out")
        bought = np.zeros(n, bool)
        bought[pc] = True
        self._purchases(d, pc, pitem)
        if self.rec is not None:
            self.rec.funnel(d, vc, vitem, carted, vbuy, dc, ditem, dbuy, xc, xitem)
        return bought

    def _purchases(self, d: int, pc: np.ndarray, pitem: np.ndarray) -> None:
        st, pop, dyn, rng, cat = self.st, self.pop, self.dyn, self.rng, self.cat
        pcat = cat.category[pitem]
        qty = 1 + rng.poisson(np.where(cat.consumable[pcat], 0.8, 0.2))
        price = np.round(cat.base_price[pitem] * cat.price_mult[d, pcat], 2)
        buyers = np.unique(pc)
        pref = rng.random(len(buyers)) < dyn.pref_channel_prob
        chan = np.where(pref, pop.channel[buyers], rng.integers(0, len(CHANNELS), len(buyers)))
        spend = np.bincount(np.searchsorted(buyers, pc), weights=qty * price, minlength=len(buyers))
        earned = np.floor(spend).astype(np.int64)
        st.points[buyers] += earned
        st.tier[buyers] = np.searchsorted(dyn.tier_points, st.points[buyers], side="right") - 1
        st.engagement[buyers] += 1
        st.last_purchase[buyers] = d
        k = cat.cons_index[pcat]
        c = k >= 0
        st.due[pc[c], k[c]] = d + np.round(cat.cycle[pcat[c]] * pop.cycle_factor[pc[c]]).astype(np.int32)
        st.rebuy[pc[c], k[c]] = pitem[c]
        dc = pc[~c]
        st.owned[dc, st.owned_next[dc]] = pitem[~c]
        st.owned_next[dc] = (st.owned_next[dc] + 1) % dyn.owned_slots
        # Deliveries and service: late deliveries for remote orders, staff trouble in stores.
        u = rng.random(len(buyers))
        late = (chan != STORE) & (u < dyn.late_prob)
        lc = buyers[late]
        np.add.at(st.shocks, (lc, (d + 3) % dyn.shock_window), dyn.shock_late)
        lt = rng.random(len(lc)) < dyn.late_ticket_prob
        self._tickets(lc[lt], d, d + 3 + rng.integers(0, 4, lt.sum()), "delivery")
        self._tickets(buyers[(chan == STORE) & (u < dyn.staff_ticket_prob)], d, d, "staff")
        # Returns: quality problems (bad experience, maybe a ticket) and ordinary returns.
        u = rng.random(len(pc))
        bad = u < cat.quality_rate[pcat]
        ret = bad | (u < cat.quality_rate[pcat] + cat.return_rate[pcat])
        rday = d + rng.integers(2, dyn.return_max_delay + 1, len(pc))
        np.add.at(st.shocks, (pc[bad], rday[bad] % dyn.shock_window), dyn.shock_quality)
        t = rng.random(len(pc))
        qt = bad & (t < dyn.quality_ticket_prob)
        self._tickets(pc[qt], d, rday[qt], "quality")
        rt = ret & ~bad & (t < dyn.return_ticket_prob)
        self._tickets(pc[rt], d, rday[rt], "return_exchange")
        if self.rec is not None:
            self.rec.purchases(d, pc, pitem, qty, price, buyers, chan, earned, st.tier[buyers], ret, rday)

    def _tickets(self, cust: np.ndarray, d: int, open_day, category: str) -> None:
        """Open tickets; unresolved ones hurt more, a week later."""
        dyn, st = self.dyn, self.st
        open_day = np.maximum(np.broadcast_to(open_day, cust.shape), d + 1)
        resolved = self.rng.random(len(cust)) < dyn.resolve_prob
        np.add.at(st.shocks, (cust, open_day % dyn.shock_window), dyn.shock_ticket)
        np.add.at(
            st.shocks,
            (cust[~resolved], (open_day[~resolved] + dyn.unresolved_delay) % dyn.shock_window),
            dyn.shock_unresolved,
        )
        if self.rec is not None and len(cust):
            self.rec.tickets(cust, open_day, resolved, TICKET_CATEGORIES.index(category))

    def _campaign(self, d: int, live: np.ndarray) -> None:
        """Offers to a random share of observably active customers not already in an offer."""
        st, pop, dyn, rng = self.st, self.pop, self.dyn, self.rng
        n = len(st.alive)
        eligible = (pop.signup_day <= d) & (st.last_purchase >= d - self.camp.lookback_days) & (st.offer_until <= d)
        sel = np.flatnonzero(eligible & (rng.random(n) < self.camp.share))
        otype = rng.integers(0, len(OFFER_TYPES), len(sel)).astype(np.int8)
        st.offer_type[sel] = otype
        st.offer_until[sel] = d + self.camp.effect_days
        helps = np.clip(-pop.effect[sel, otype], 0, 1)
        redeem = live[sel] & (rng.random(len(sel)) < dyn.redeem_base + dyn.redeem_gain * helps)
        rday = np.where(redeem, d + rng.integers(1, 15, len(sel)), -1)
        if self.rec is not None:
            self.rec.offers(d, sel, otype, rday)


def simulate(
    cat: Catalog, pop: Population, dyn: Dynamics, camp: Campaigns, seed: int, chunk: int, days: int, recorder=None
) -> Simulator:
    """Run a chunk from day 0 up to (not including) `days`; the same arguments always give the same state."""
    state = new_state(len(pop.rate), int((cat.cons_index >= 0).sum()), dyn)
    sim = Simulator(cat, pop, state, dyn, camp, np.random.default_rng([seed, 2, chunk]), recorder)
    for d in range(days):
        sim.step(d)
    return sim
