"""The mixed-logit price choice: customers who pick cheap items get a high sensitivity and cheap items' shares."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from training.recommend.price_choice import PriceChoice

# two categories of four items each, prices rising within each
CATEGORY = np.array([0, 0, 0, 0, 1, 1, 1, 1])
PRICE = np.array([5.0, 10.0, 20.0, 40.0, 50.0, 100.0, 200.0, 400.0])


def _engaged(rng: np.random.Generator) -> tuple[csr_matrix, np.ndarray]:
    """60 customers: a third pick the cheapest items, a third the dearest, a third at random; plus one newcomer."""
    rows, cols = [], []
    kinds = np.repeat([0, 1, 2], 20)
    for user, kind in enumerate(kinds):
        for _ in range(12):
            category = rng.integers(2)
            offset = {0: rng.choice([0, 1], p=[0.8, 0.2]), 1: rng.choice([2, 3], p=[0.2, 0.8]), 2: rng.integers(4)}[
                kind
            ]
            rows.append(user)
            cols.append(4 * category + offset)
    matrix = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(kinds) + 1, len(PRICE)))
    matrix.sum_duplicates()
    return matrix, np.append(kinds, -1)


def test_sensitivity_and_shares_follow_what_each_customer_picks() -> None:
    engaged, kinds = _engaged(np.random.default_rng(0))
    model = PriceChoice(engaged, PRICE, CATEGORY, levels=21, sensitivity_range=(-3.0, 3.0), iterations=20)
    users = np.arange(len(kinds))
    sens = model.sensitivity(users)
    cheap, dear, blind = (sens[kinds == k].mean() for k in (0, 1, 2))
    assert cheap > blind > dear
    newcomer = sens[-1]  # nothing engaged: the population's mix
    assert dear < newcomer < cheap
    # within a category, the shares are a distribution, cheaper-first for the price-sensitive, dearer-first otherwise
    for user in (0, 25, len(kinds) - 1):
        for category in (0, 1):
            items = np.flatnonzero(category == CATEGORY)
            share = model.share(np.full(4, user), items)
            assert abs(share.sum() - 1.0) < 1e-5
    cheap_share = model.share(np.array([0, 0]), np.array([0, 3]))
    dear_share = model.share(np.array([25, 25]), np.array([0, 3]))
    assert cheap_share[0] > cheap_share[1] and dear_share[1] > dear_share[0]


def test_the_mix_is_a_distribution_and_chunks_do_not_change_shares() -> None:
    engaged, kinds = _engaged(np.random.default_rng(1))
    model = PriceChoice(engaged, PRICE, CATEGORY, levels=11, sensitivity_range=(-2.0, 2.0), iterations=10)
    assert abs(model.mix.sum() - 1.0) < 1e-9 and (model.mix > 0).all()
    users = np.repeat(np.arange(len(kinds)), len(PRICE))
    items = np.tile(np.arange(len(PRICE)), len(kinds))
    np.testing.assert_allclose(model.share(users, items, chunk=7), model.share(users, items))
