"""Within-category choice with a price sensitivity per customer: a mixed logit fitted on what customers engaged with."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.special import logsumexp

from training.recommend.price_bands import price_positions


class PriceChoice:
    """P(item | customer, its category) = sum over sensitivities b of w[customer, b] * softmax over the category of
    (appeal[item] - b * price position[item]).

    The sensitivities are a fixed grid; their mix over customers (`mix`) is learned with each customer's posterior
    over the grid (`weights`), by EM, and each item's appeal by the logit's fixed-point step (expected counts equal
    observed ones). A customer who keeps picking the cheap items of their categories ends up on the high
    sensitivities, one who ignores prices on zero; a customer with little history keeps the population's mix."""

    def __init__(
        self,
        engaged: csr_matrix,
        price: np.ndarray,
        category: np.ndarray,
        levels: int,
        sensitivity_range: tuple[float, float],
        iterations: int,
    ) -> None:
        position = price_positions(price, category)
        code = np.where(category >= 0, category, category.max(initial=0) + 1)  # unknown category: its own
        self.grid = np.linspace(*sensitivity_range, levels)
        self._code, self._position = code, position
        # items sorted by category and where each category's run starts: what np.logaddexp.reduceat reads
        self._order = np.argsort(code, kind="stable")
        self._starts = np.searchsorted(code[self._order], np.arange(int(code.max(initial=0)) + 1))
        engaged = csr_matrix(engaged, dtype=np.float64)
        n_cat = int(code.max(initial=0)) + 1
        to_category = csr_matrix((np.ones(len(code)), (np.arange(len(code)), code)), shape=(len(code), n_cat))
        per_category = (engaged @ to_category).toarray()  # customers x categories: how often each engaged with each
        observed = np.asarray(engaged.sum(axis=0)).ravel()
        self.appeal = np.log(observed + 0.5)
        self.mix = np.full(levels, 1.0 / levels)
        for _ in range(iterations):
            log_p = self._log_choice()
            weights = self._posterior(engaged, log_p)
            self.mix = np.maximum(weights.mean(axis=0), 1e-12)
            expected = (np.exp(log_p) * (weights.T @ per_category)[:, code]).sum(axis=0)
            self.appeal += np.log((observed + 0.5) / (expected + 0.5))
        log_p = self._log_choice()
        self.weights = self._posterior(engaged, log_p).astype(np.float32)
        self.choice = np.exp(log_p).astype(np.float32)  # grid x items

    def _posterior(self, engaged: csr_matrix, log_p: np.ndarray) -> np.ndarray:
        """Each customer's posterior over the grid (customers x grid) given what they engaged with."""
        loglik = np.asarray(engaged @ log_p.T) + np.log(self.mix)
        return np.exp(loglik - logsumexp(loglik, axis=1, keepdims=True))

    def _log_choice(self) -> np.ndarray:
        """log P(item | category) at every sensitivity of the grid (grid x items)."""
        logits = self.appeal[None, :] - self.grid[:, None] * self._position[None, :]
        norm = np.logaddexp.reduceat(logits[:, self._order], self._starts, axis=1)  # grid x categories
        return logits - norm[:, self._code]

    def share(self, users: np.ndarray, item: np.ndarray, chunk: int = 200_000) -> np.ndarray:
        """Each pair's (users, item) chance of the item among its category's, mixed over the customer's posterior."""
        out = np.empty(len(item), np.float64)
        for start in range(0, len(item), chunk):
            u, i = users[start : start + chunk], item[start : start + chunk]
            out[start : start + chunk] = np.einsum("pg,gp->p", self.weights[u], self.choice[:, i])
        return out

    def sensitivity(self, users: np.ndarray) -> np.ndarray:
        """Each customer's posterior mean price sensitivity."""
        return self.weights[users] @ self.grid
