"""Settings of the recommender (training/recommend/): ALS, the two-stage pipeline and the next-item sequence model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from patron.config.section import Section, SeededSection


class RecommenderConfig(SeededSection):
    """`patron train recommender`: implicit ALS, or the two-stage pipeline with ALS for the rest."""

    factors: int = Field(64, gt=0)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0)
    iterations: int = Field(20, gt=0)
    use_gpu: bool = False
    holdout_days: int = Field(30, gt=0)  # time-based holdout for evaluation
    k: int = Field(10, gt=0)
    # two_stage: the `two_stage` section's candidate sources + LambdaRank ranker (ranker labels: the holdout_days
    # before the fit's cutoff), ALS for the rest
    pipeline: Literal["als", "two_stage"] = "als"


class TwoStageSources(Section):
    """The candidate sources of the two-stage pipeline (training/recommend/candidates.py)."""

    als: bool = True
    item_item: bool = True
    ease: bool = True
    copurchase: bool = True
    # The customer's own repeat-purchase cycle is off: the benchmark protocol excludes items already seen, so it
    # cannot contribute there (its ablation row shows it); switch it on where repeat purchases count.
    repeat: bool = False
    trending: bool = True
    popular: bool = True
    sequence: bool = False  # the `sequence` section's next-item model, as a source and as ranking features


class TwoStageConfig(SeededSection):
    """Candidates from several sources, re-ranked by LightGBM LambdaRank (training/recommend/ranker*.py)."""

    sources: TwoStageSources = TwoStageSources()
    # The peer sources' params by peer (als; cosine: item_item; ease), as `patron tune recommender` or `patron bench
    # recsys` chose them; a peer not named: ALS takes the recommender section's settings, the others the defaults of
    # training/recommend/peers.py
    peers: dict[Literal["als", "cosine", "ease"], dict[str, Any]] = {}
    ranker: bool = True  # False: candidates ordered by the sum of their sources' reciprocal ranks
    # Ranker training labels: the validation period, then each customer's previous eighth of the training history
    # (sources refit without it), and so on
    label_windows: int = Field(2, ge=1)
    # Each source's best unseen items: the ranker's rows (serving cost grows with them); patron train recommender's
    # holdout NDCG@10 0.2300 vs 0.2311 at 200, recall level
    candidates_per_source: int = Field(100, gt=0)
    # EASE source above this many items: each item's ease_neighbours largest weights, computed blockwise, kept as a
    # sparse matrix (a dense items x items float32 matrix is 1.6 GB at 20,000 items; 500 a column: 80 MB). EASE alone
    # on ML-100K, test NDCG@10 vs dense: 500 +0.1%, 200 -2.4% (docs/benchmarks.md)
    ease_dense_max_items: int = Field(5000, ge=0)
    ease_neighbours: int = Field(500, gt=0)
    copurchase_window: int = Field(5, gt=0)  # "bought soon after": within this many later interactions of a customer
    recent_items: int = Field(20, gt=0)  # a customer's latest items that drive co-purchase scores
    recency_decay: float = Field(0.8, gt=0.0, le=1.0)  # weight of the n-th latest item: decay ** n
    trend_days: int = Field(30, gt=0)  # trending: interactions in the last days of the history
    # Ranker: customers cut into quantiles of the price position of what they buy and browse, each band's item shares
    # of a category, shrunk this far to the overall (0 bands: off)
    price_bands: int = Field(4, ge=0)
    price_band_shrink: float = Field(0.5, ge=0.0, le=1.0)
    # Ranker: a mixed logit of the choice within a category, appeal per item and a price sensitivity per customer on
    # this grid (its mix learned by EM in this many rounds; 0 levels: off): validation NDCG@10 0.3274 vs 0.3262 with
    # the bands alone (docs/benchmarks.md)
    price_choice_levels: int = Field(21, ge=0)
    price_choice_range: tuple[float, float] = (-2.0, 2.0)
    price_choice_iterations: int = Field(20, gt=0)
    as_of_recent_days: int = Field(90, gt=0)  # ranker's point-in-time item shares: days before each customer's moment
    # Ranker's choice features: pseudo-purchases of the overall category mix added to a customer's category share
    # (smooths it for customers with few purchases; 1 vs 5: validation NDCG@10 0.3282 vs 0.3258, docs/benchmarks.md)
    category_prior_weight: float = Field(1.0, ge=0.0)
    complement_days: int = Field(10, gt=0)  # ranker's pending_complement: P(item bought within these days after one)
    # Events read as browsing, each customer's only before the day of their last purchase in a fit ([]: none): the
    # ranker's taste-from-browsing features and, at this weight beside a purchase's 1, the ALS, item-item and EASE
    # sources' input. Carts are left out: each repeats the view it follows (one draw of taste counted twice;
    # validation NDCG@10 with views only 0.3254 vs 0.3214 with carts)
    browsing_events: list[str] = ["view"]
    browsing_weight: float = Field(0.3, ge=0.0)
    # The ranker's labels: new purchases in a label window (2) and also the new items browsed there (1): validation
    # NDCG@10 0.3216 vs 0.3193 (docs/benchmarks.md)
    browsing_labels: bool = True
    threads: int = Field(2, gt=0)
    # At 400 the ranker stopped at the cap (synthetic, rate 0.02: 475-674 rounds with 1500; validation NDCG@10 0.3245
    # vs 0.3239, mean of seeds 42/43; docs/benchmarks.md)
    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(100, gt=0)  # patience (at 40 it sometimes stopped after ~12 rounds: 0.304)
    early_stopping_share: float = Field(0.15, gt=0.0, lt=1.0)  # ranker's training customers held out for it
    # Synthetic validation NDCG@10, mean of 3 ranker seeds: 0.3272 vs 0.3255 for the earlier rate 0.02, 7 leaves,
    # feature share 0.8 with bagging (docs/benchmarks.md)
    ranker_params: dict[str, Any] = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "lambda_l2": 10.0,
        "feature_fraction": 0.7,
        "verbose": -1,
    }


class SequenceConfig(SeededSection):
    """Next-item model in PyTorch (training/recommend/sequence.py): a two-stage source and ranking features."""

    # gru (GRU4Rec) | sasrec (causal self-attention); ML-100K validation NDCG@10 after 10 epochs, sources fit on
    # train: gru 0.1245, sasrec (2 blocks) 0.0844
    architecture: Literal["sasrec", "gru"] = "gru"
    dim: int = Field(64, gt=0)
    blocks: int = Field(1, gt=0)  # GRU layers / transformer blocks
    heads: int = Field(1, gt=0)  # sasrec attention heads (must divide dim)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, gt=1)  # latest items of a history the model reads
    epochs: int = Field(10, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(128, gt=0)
    negatives: int = Field(256, ge=0)  # sampled-softmax negatives shared by a batch; 0: full softmax (~3x slower)
    threads: int = Field(2, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"  # cuda: only where torch sees a CUDA device
    k: int = Field(10, gt=0)  # `patron train sequence`: metrics @k on each customer's last (new) purchase

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SequenceConfig:
        if self.dim % self.heads:
            raise ValueError(f"sequence.heads ({self.heads}) must divide sequence.dim ({self.dim})")
        return self
