"""`python -m benchmarks.ease_sparsity`: the EASE source's NDCG@k with its sparse top-k weights against the dense
weights, under the recsys bench's split (RecBole TO RS 8:1:1), on an ingested workspace or ML-100K's u.data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.recsys import load_interactions
from training.mlops.metrics import evaluate
from training.mlops.splits import split_interactions, targets
from training.recommend.peers import make_peer


def read_events(source: str) -> pd.DataFrame:
    """Purchases [customer_id, item_id, ts] of a workspace (its tables/) or of an ML-100K u.data file."""
    path = Path(source)
    if path.is_file():
        raw = pd.read_csv(path, sep="\t", names=["customer_id", "item_id", "rating", "ts"])
        return raw.assign(ts=pd.to_datetime(raw["ts"], unit="s"))[["customer_id", "item_id", "ts"]]
    return load_interactions(path)[0]


def main() -> None:
    """Dense EASE and sparse EASE at each neighbour count: test NDCG@k and recall@k, fit seconds, weight bytes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="a workspace folder or an ML-100K u.data file")
    parser.add_argument("--l2", type=float, default=200.0)
    parser.add_argument("--neighbours", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    split = split_interactions(read_events(args.source))
    full = split.matrix(split.train, split.valid)
    test = targets(split, split.test, full)
    cold = np.zeros(split.shape[0], dtype=bool)
    print(f"{args.source}: {split.shape[0]} customers x {split.shape[1]} items, l2 {args.l2:g}")
    print("| EASE weights | ndcg@k | recall@k | fit s | weights MB |\n|---|---|---|---|---|")
    dense_ndcg = None
    for neighbours in [0, *args.neighbours]:
        params = {"l2": args.l2} | ({"neighbours": neighbours, "dense_max_items": 0} if neighbours else {})
        t0 = time.perf_counter()
        peer = make_peer("ease", params, 0).fit(full)
        seconds = time.perf_counter() - t0
        got = evaluate(peer.score, full, full, test, args.k, cold)
        w = peer.weights
        size = w.nbytes if isinstance(w, np.ndarray) else w.data.nbytes + w.indices.nbytes + w.indptr.nbytes
        ndcg = got[f"ndcg@{args.k}"]
        dense_ndcg = ndcg if dense_ndcg is None else dense_ndcg
        name = "dense" if not neighbours else f"sparse, {neighbours} per item"
        change = "" if not neighbours else f" ({(ndcg / dense_ndcg - 1) * 100:+.2f}%)"
        print(f"| {name} | {ndcg:.4f}{change} | {got[f'recall@{args.k}']:.4f} | {seconds:.1f} | {size / 2**20:.1f} |")


if __name__ == "__main__":
    main()
