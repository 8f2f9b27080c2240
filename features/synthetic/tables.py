"""What an observer of the simulation writes down: rows of the contract tables and of the ground truth, as Arrow."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.synthetic.simulator import CART, PURCHASE, RETURN, VIEW, State
from features.synthetic.world import DEPARTMENTS, REGIONS, Catalog, Dynamics, Population
from features.tables.contract import CHANNELS, EVENT_TYPES, LOYALTY_TIERS, OFFER_TYPES, TICKET_CATEGORIES

TS = pa.timestamp("ns")
DAY_NS = 86_400 * 10**9
OPEN_S, CLOSE_S = 8 * 3600, 21 * 3600  # sessions start within opening hours
EVENT_BATCH_ROWS = 1_000_000  # events converted (and written as a row group) at a time, to bound memory

SCHEMAS = {
    "customers": pa.schema(
        [
            ("customer_id", pa.string()),
            ("signup_date", TS),
            ("region", pa.string()),
            ("birth_year", pa.int64()),
            ("loyalty_tier", pa.string()),
            ("preferred_channel", pa.string()),
        ]
    ),
    "products": pa.schema(
        [
            ("item_id", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),
            ("department", pa.string()),
            ("brand", pa.string()),
            ("unit_price", pa.float64()),
            ("in_stock", pa.bool_()),
            ("launched_at", TS),
        ]
    ),
    "events": pa.schema(
        [
            ("event_id", pa.string()),
            ("customer_id", pa.string()),
            ("item_id", pa.string()),
            ("ts", TS),
            ("type", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.float64()),
            ("channel", pa.string()),
            ("order_id", pa.string()),
        ]
    ),
    "tickets": pa.schema(
        [
            ("ticket_id", pa.string()),
            ("customer_id", pa.string()),
            ("opened_at", TS),
            ("resolved_at", TS),
            ("category", pa.string()),
            ("satisfaction", pa.int64()),
        ]
    ),
    "surveys": pa.schema([("customer_id", pa.string()), ("ts", TS), ("nps", pa.int64()), ("csat", pa.int64())]),
    "loyalty": pa.schema(
        [("customer_id", pa.string()), ("ts", TS), ("points_delta", pa.int64()), ("tier_after", pa.string())]
    ),
    "offers": pa.schema(
        [
            ("offer_id", pa.string()),
            ("customer_id", pa.string()),
            ("sent_at", TS),
            ("offer_type", pa.string()),
            ("cost", pa.float64()),
            ("randomized", pa.bool_()),
            ("redeemed_at", TS),
        ]
    ),
    "consent": pa.schema(
        [("customer_id", pa.string()), ("personalization", pa.bool_()), ("marketing", pa.bool_()), ("updated_at", TS)]
    ),
    "hazard_weekly": pa.schema([("customer_id", pa.string()), ("week_start", TS), ("hazard", pa.float32())]),
}


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded string ids such as C0000001."""
    digits = pc.utf8_lpad(pa.array(np.asarray(numbers, np.int64)).cast(pa.string()), width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def customer_ids(numbers: np.ndarray) -> pa.Array:
    return ids("C", np.asarray(numbers) + 1, 7)


def item_ids(numbers: np.ndarray) -> pa.Array:
    return ids("I", np.asarray(numbers) + 1, 5)


def labels(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(names, pa.string()), pa.array(np.asarray(codes, np.int32)))


class Clock:
    """Turns day indices and seconds into timestamps; negative or masked entries become nulls."""

    def __init__(self, start: date) -> None:
        self.start_ns = np.datetime64(start, "ns").astype(np.int64)

    def ts(self, day: np.ndarray, sec: np.ndarray | int = 0, valid: np.ndarray | None = None) -> pa.Array:
        ns = self.start_ns + np.asarray(day, np.int64) * DAY_NS + np.asarray(sec, np.int64) * 10**9
        return pa.array(ns, TS, mask=None if valid is None else ~np.asarray(valid))


class Recorder:
    """Collects the observable rows of one chunk while the simulator runs; draws only from its own RNG."""

    def __init__(self, pop: Population, rng: np.random.Generator, dyn: Dynamics) -> None:
        n = len(pop.rate)
        self.rng, self.dyn, self.n, self.pref = rng, dyn, n, pop.channel
        self.buyers, self.chan = np.zeros(0, np.int64), np.zeros(0, np.int8)
        self.events: list[tuple] = []
        self.tickets_: list[tuple] = []
        self.surveys: list[tuple] = []
        self.loyalty: list[tuple] = []
        self.offers_: list[tuple] = []
        self.hazards: list[tuple] = []
        self.hsum, self.hcnt = np.zeros(n), np.zeros(n, np.int32)
        self.base = np.zeros(n, np.int32)
        self.orders = 0
        self.order_of = np.zeros(0, np.int64)

    def day(self, d: int, live: np.ndarray, h: np.ndarray, st: State, pop: Population) -> None:
        """Hazard bookkeeping, session clock and survey answers for day `d`."""
        self.hsum += np.where(live, h, 0)
        self.hcnt += live
        if d % 7 == 6:
            self.flush_week(d - 6)
        self.base = self.rng.integers(OPEN_S, CLOSE_S, self.n)
        dyn, rng = self.dyn, self.rng
        ask = np.flatnonzero(live & (rng.random(self.n) < dyn.survey_prob * dyn.survey_response))
        m, dis, ps = pop.mood[ask], st.dissat[ask], st.price_shock[ask]
        nps = np.clip(np.round(dyn.nps_base + 1.3 * m - 2.5 * dis - 1.0 * ps + rng.normal(0, 1.2, len(ask))), 0, 10)
        csat = np.clip(np.round(dyn.csat_base + 0.5 * m - 1.2 * dis + rng.normal(0, 0.6, len(ask))), 1, 5)
        skip = rng.integers(0, 10, len(ask))  # a few answer only one of the two questions
        self.surveys.append((ask, np.full(len(ask), d), np.where(skip == 0, -1, nps), np.where(skip == 1, -1, csat)))

    def flush_week(self, week_day: int) -> None:
        on = np.flatnonzero(self.hcnt)
        self.hazards.append((on, np.full(len(on), week_day), self.hsum[on] / self.hcnt[on]))
        self.hsum[:], self.hcnt[:] = 0, 0

    def purchases(self, d, pc_, pitem, qty, price, buyers, chan, earned, tier, ret, rday) -> None:
        """Purchase and return events, one order per buyer and day, and the loyalty ledger."""
        order = self.orders + np.arange(len(buyers))
        self.orders += len(buyers)
        at = np.searchsorted(buyers, pc_)
        self.buyers, self.chan = buyers, chan
        sec = self.base[pc_] + 900 + np.arange(len(pc_)) % 60
        self._events(pc_, d, sec, pitem, PURCHASE, qty, price, chan[at], order[at])
        r = np.flatnonzero(ret)
        self._events(
            pc_[r],
            rday[r],
            self.rng.integers(OPEN_S, CLOSE_S, len(r)),
            pitem[r],
            RETURN,
            qty[r],
            price[r],
            chan[at][r],
            order[at][r],
        )
        self.loyalty.append((buyers, np.full(len(buyers), d), earned, tier.copy()))

    def funnel(self, d, vc, vitem, carted, vbuy, dc, ditem, dbuy, xc, xitem) -> None:
        """Views and carts of the day (purchases are recorded by `purchases`)."""
        buyers = self.buyers
        c = np.concatenate([vc, dc, xc])
        item = np.concatenate([vitem, ditem, xitem])
        cart = np.concatenate([carted, np.ones(len(dc) + len(xc), bool)])
        chan = self._channels(c, buyers)
        sec = self.base[c] + self.rng.integers(0, 600, len(c))
        self._events(c, d, sec, item, VIEW, 1, np.nan, chan, -1)
        self._events(c[cart], d, sec[cart] + 30, item[cart], CART, 1, np.nan, chan[cart], -1)
        self.buyers = np.zeros(0, np.int64)

    def _channels(self, c: np.ndarray, buyers: np.ndarray) -> np.ndarray:
        """Buyers browse on the channel they bought on; others on their preferred channel."""
        pref = self.pref[c]
        if not len(buyers):
            return pref
        pos = np.minimum(np.searchsorted(buyers, c), len(buyers) - 1)
        return np.where(buyers[pos] == c, self.chan[pos], pref)

    def _events(self, c, day, sec, item, etype, qty, price, chan, order) -> None:
        k = len(c)
        b = np.broadcast_to
        self.events.append(
            (c, b(day, (k,)), sec, item, b(etype, (k,)), b(qty, (k,)), b(price, (k,)), b(chan, (k,)), b(order, (k,)))
        )

    def tickets(self, cust, open_day, resolved, category: int) -> None:
        k = len(cust)
        rday = np.where(resolved, open_day + self.rng.integers(0, 7, k), -1)
        sat = np.where(resolved, self.rng.integers(3, 6, k), self.rng.integers(1, 3, k))
        sat = np.where(self.rng.random(k) < 0.2, -1, sat)
        self.tickets_.append((cust, open_day, self.rng.integers(OPEN_S, CLOSE_S, k), rday, np.full(k, category), sat))

    def offers(self, d, sel, otype, rday) -> None:
        self.offers_.append((sel, np.full(len(sel), d), otype, rday))


def _cat(parts: list[tuple], i: int, dtype=None) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype or np.int64)
    return (
        np.concatenate([np.asarray(p[i]) for p in parts]).astype(dtype)
        if dtype
        else np.concatenate([np.asarray(p[i]) for p in parts])
    )


def _int_or_null(x: np.ndarray) -> pa.Array:
    x = np.asarray(x, np.int64)
    return pa.array(x, pa.int64(), mask=x < 0)


def chunk_tables(
    rec: Recorder,
    st: State,
    first: int,
    offsets: dict[str, int],
    clock: Clock,
    offer_costs: dict[str, float],
    days: int,
) -> dict[str, pa.Table | list[pa.Table]]:
    """The chunk's rows as contract tables: nothing after the data ends, nor from a customer who has dropped out."""
    gone = np.minimum(st.dropout_day, days)
    out: dict[str, pa.Table] = {}
    c, day, sec, item = (_cat(rec.events, i) for i in range(4))
    keep = np.flatnonzero(day < gone[c])
    et, qty, price, chan, order = (_cat(rec.events, i)[keep] for i in range(4, 9))
    c, day, sec, item = c[keep], day[keep], sec[keep], item[keep]
    order = np.where(order >= 0, order + offsets["orders"], -1)
    rec.events.clear()
    price = price.astype(np.float64)
    out["events"] = [
        pa.table(
            [
                ids("E", offsets["events"] + np.arange(b.start, b.stop) + 1, 10),
                customer_ids(first + c[b]),
                item_ids(item[b]),
                clock.ts(day[b], sec[b]),
                labels(EVENT_TYPES, et[b]),
                pa.array(qty[b].astype(np.int64)),
                pa.array(price[b], mask=np.isnan(price[b])),
                labels(CHANNELS, chan[b]),
                pc.if_else(
                    pa.array(order[b] >= 0), ids("O", np.maximum(order[b], 0) + 1, 9), pa.scalar(None, pa.string())
                ),
            ],
            schema=SCHEMAS["events"],
        )
        for b in (slice(i, min(i + EVENT_BATCH_ROWS, len(c))) for i in range(0, max(len(c), 1), EVENT_BATCH_ROWS))
    ]
    c, oday, osec, rday, tcat, sat = (_cat(rec.tickets_, i) for i in range(6))
    keep = np.flatnonzero(oday < gone[c])
    c, oday, osec, rday, tcat, sat = (a[keep] for a in (c, oday, osec, rday, tcat, sat))
    rday = np.where(rday < days, rday, -1)  # still open when the data ends
    out["tickets"] = pa.table(
        [
            ids("T", offsets["tickets"] + np.arange(len(c)) + 1, 9),
            customer_ids(first + c),
            clock.ts(oday, osec),
            clock.ts(np.maximum(rday, 0), osec + 3600, valid=rday >= 0),
            labels(TICKET_CATEGORIES, tcat),
            _int_or_null(sat),
        ],
        schema=SCHEMAS["tickets"],
    )
    c, day, nps, csat = (_cat(rec.surveys, i) for i in range(4))
    out["surveys"] = pa.table(
        [customer_ids(first + c), clock.ts(day, 20 * 3600), _int_or_null(nps), _int_or_null(csat)],
        schema=SCHEMAS["surveys"],
    )
    c, day, earned, tier = (_cat(rec.loyalty, i) for i in range(4))
    out["loyalty"] = pa.table(
        [
            customer_ids(first + c),
            clock.ts(day, 23 * 3600),
            pa.array(earned.astype(np.int64)),
            labels(LOYALTY_TIERS, tier),
        ],
        schema=SCHEMAS["loyalty"],
    )
    c, day, otype, rday = (_cat(rec.offers_, i) for i in range(4))
    rday = np.where(rday < gone[c], rday, -1)  # never redeemed (gone, or after the data ends)
    cost = np.array([offer_costs[t] for t in OFFER_TYPES])[otype]
    out["offers"] = pa.table(
        [
            ids("F", offsets["offers"] + np.arange(len(c)) + 1, 9),
            customer_ids(first + c),
            clock.ts(day, 9 * 3600),
            labels(OFFER_TYPES, otype),
            pa.array(cost, pa.float64()),
            pa.array(np.ones(len(c), bool)),
            clock.ts(np.maximum(rday, 0), 12 * 3600, valid=rday >= 0),
        ],
        schema=SCHEMAS["offers"],
    )
    c, day, hz = (_cat(rec.hazards, i) for i in range(3))
    out["hazard_weekly"] = pa.table(
        [customer_ids(first + c), clock.ts(day), pa.array(hz.astype(np.float32))], schema=SCHEMAS["hazard_weekly"]
    )
    return out


def customer_tables(pop: Population, st: State, first: int, clock: Clock) -> dict[str, pa.Table]:
    """Customers and consent of a chunk (tier as at the end of the data)."""
    n = len(pop.rate)
    cid = customer_ids(first + np.arange(n))
    signup = clock.ts(pop.signup_day)
    return {
        "customers": pa.table(
            [
                cid,
                signup,
                labels(REGIONS, pop.region),
                pa.array(pop.birth_year.astype(np.int64)),
                labels(LOYALTY_TIERS, st.tier),
                labels(CHANNELS, pop.channel),
            ],
            schema=SCHEMAS["customers"],
        ),
        "consent": pa.table(
            [cid, pa.array(pop.personalization), pa.array(pop.marketing), signup], schema=SCHEMAS["consent"]
        ),
    }


def category_names(cat: Catalog) -> np.ndarray:
    """Category labels as written in products.category."""
    return np.array([f"{DEPARTMENTS[cat.department[c]]} {c:02d}" for c in range(cat.n_categories)], dtype=object)


def products_table(cat: Catalog, clock: Clock) -> pa.Table:
    """The catalogue as it stands at the end of the data."""
    n = len(cat.category)
    last = len(cat.oos) - 1
    category = pa.array(category_names(cat)[cat.category], pa.string())
    return pa.table(
        [
            item_ids(np.arange(n)),
            pc.binary_join_element_wise(category, ids("#", np.arange(n) + 1, 5), " "),
            category,
            labels(DEPARTMENTS, cat.department[cat.category]),
            ids("B", cat.brand + 1, 3),
            pa.array(np.round(cat.base_price * cat.price_mult[last, cat.category], 2)),
            pa.array(~cat.oos[last]),
            clock.ts(cat.launch_day),
        ],
        schema=SCHEMAS["products"],
    )
