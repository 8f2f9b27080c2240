"""The PyTorch next-item model: learns a sequence pattern, is deterministic, feeds the two-stage candidates and
round-trips through the MLflow registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from features.tables.store import write_table
from patron.config import SequenceConfig, Settings, TwoStageConfig, TwoStageSources, load_settings
from training.mlops import tracking
from training.recommend.candidates import CandidateSources, source_ranks
from training.recommend.sequence import SequenceRecommender, train_sequence, training_windows, user_sequences

N_ITEMS = 8


def _tiny(**update: object) -> SequenceConfig:
    return SequenceConfig(
        **{
            "dim": 16,
            "blocks": 1,
            "dropout": 0.0,
            "max_len": 6,
            "epochs": 40,
            "lr": 0.01,
            "batch_size": 16,
            "negatives": 0,
            "threads": 1,
            "seed": 7,
            **update,
        }
    )


def _cycles(n: int, seed: int = 0) -> list[np.ndarray]:
    """Sequences walking the cycle 0 -> 1 -> ... -> 5 -> 0 from random starts (items 6, 7 never follow anything)."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 6) + np.arange(rng.integers(3, 9))) % 6 for _ in range(n)]


@pytest.mark.parametrize("architecture", ["gru", "sasrec"])
def test_learns_the_next_item_of_a_pattern(architecture: str) -> None:
    model = SequenceRecommender(_tiny(architecture=architecture), N_ITEMS).fit(_cycles(120))
    assert model.losses[-1] < model.losses[0]
    for history in ([0, 1], [3, 4], [5], [2, 3, 4, 5]):
        best = model.recommend(np.array(history), k=1)[0][0]
        assert best == (history[-1] + 1) % 6, (history, model.score_all([np.array(history)]))
    # score() agrees with the full ranking, for the items asked
    full = model.score_all([np.array([0, 1])])[0]
    np.testing.assert_allclose(model.score(np.array([0, 1]), np.array([2, 7])), full[[2, 7]])


def test_same_seed_same_scores_and_another_seed_differs() -> None:
    seqs = _cycles(40)
    histories = [np.array([0, 1, 2]), np.array([4])]
    a = SequenceRecommender(_tiny(epochs=3), N_ITEMS).fit(seqs).score_all(histories)
    b = SequenceRecommender(_tiny(epochs=3), N_ITEMS).fit(seqs).score_all(histories)
    c = SequenceRecommender(_tiny(epochs=3, seed=8), N_ITEMS).fit(seqs).score_all(histories)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_recommend_excludes_items_and_empty_history_scores_zero() -> None:
    model = SequenceRecommender(_tiny(epochs=5), N_ITEMS).fit(_cycles(40))
    recs = model.recommend(np.array([0, 1]), k=N_ITEMS, exclude=np.array([0, 1, 2]))
    assert {i for i, _ in recs}.isdisjoint({0, 1, 2}) and len(recs) == N_ITEMS - 3
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
    assert not model.score_all([np.array([], dtype=np.int64)]).any()


def test_training_windows_cover_every_next_item_once() -> None:
    x, y = training_windows([np.arange(12)], max_len=5)
    targets = sorted(y[y >= 0].tolist())
    assert targets == list(range(1, 12))  # each next item is a target exactly once
    assert ((x - 1)[y >= 0] == y[y >= 0] - 1).all()  # the input (code - 1) at a position is the item before its target
    with pytest.raises(ValueError, match="sequences"):
        SequenceRecommender(_tiny(), N_ITEMS).fit([np.array([1]), np.array([], dtype=np.int64)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="sequence.device"):
        SequenceRecommender(_tiny(device="cuda"), N_ITEMS).fit(_cycles(5))


def test_candidate_source_returns_no_seen_items() -> None:
    seqs = _cycles(30)
    ts = pd.Timestamp("2025-01-01")
    history = pd.DataFrame(
        [(u, int(i), ts + pd.Timedelta(days=d)) for u, s in enumerate(seqs) for d, i in enumerate(s)],
        columns=["u", "i", "ts"],
    )
    config = TwoStageConfig(
        candidates_per_source=4,
        threads=1,
        sources=TwoStageSources(**{s: s == "sequence" for s in TwoStageSources.model_fields}),
    )
    src = CandidateSources(config, {}, 0, _tiny(epochs=20)).fit(history, (len(seqs), N_ITEMS))
    assert src.enabled == ["sequence"]
    users = np.arange(len(seqs))
    seen = src.X[users]
    scores = src.all_scores(users)
    cands = src.candidates(scores, source_ranks(scores, seen))
    for u, c in enumerate(cands):
        assert len(c) == min(4, N_ITEMS - seen[u].nnz) and set(c.tolist()).isdisjoint(seen[u].indices.tolist())
    # the model's favourite unseen item after each customer's history is among its candidates
    for u in users:
        assert src.sequence_model.recommend(seqs[u], 1, exclude=seen[u].indices)[0][0] in cands[u]


def test_user_sequences_are_time_ordered() -> None:
    ts = pd.to_datetime(["2025-01-03", "2025-01-01", "2025-01-02", "2025-01-01"])
    history = pd.DataFrame({"u": [0, 0, 0, 2], "i": [5, 6, 7, 1], "ts": ts})
    seqs = user_sequences(history, 3)
    assert [s.tolist() for s in seqs] == [[6, 7, 5], [], [1]]


def _workspace(tmp_path: Path) -> Settings:
    settings = load_settings(workspace=str(tmp_path / "ws"), seed=7, sequence=_tiny(epochs=20).model_dump(mode="json"))
    seqs = _cycles(60, seed=1)
    start = pd.Timestamp("2025-01-01")
    rows = [
        (f"E{u}-{d}", f"C{u}", f"I{i}", start + pd.Timedelta(days=d), "purchase")
        for u, s in enumerate(seqs)
        for d, i in enumerate(s)
    ]
    rows.append(("V1", "C0", "I7", start, "view"))  # not a purchase: ignored
    events = pd.DataFrame(rows, columns=["event_id", "customer_id", "item_id", "ts", "type"])
    write_table(events, settings.tables_dir, "events")
    return settings


def test_training_run_logs_and_registered_model_round_trips(tmp_path: Path) -> None:
    settings = _workspace(tmp_path)
    result = train_sequence(settings)
    assert result.model_version == 1 and 0.0 <= result.metrics["ndcg_at_10"] <= 1.0
    assert result.metrics["hit_at_10"] == 1.0  # 6 cycle items, < 10 left unseen: the next item is always listed
    client = tracking.configure(settings)
    run = client.get_run(result.run_id)
    assert run.data.params["sequence.architecture"] == "gru" and "train_loss" in run.data.metrics
    assert run.data.tags[tracking.FINGERPRINT_TAG]
    version = client.get_model_version(settings.tracking.sequence_model, "1")
    assert version.tags["patron.primary_metric"] == "ndcg_at_10"

    loaded = mlflow.pyfunc.load_model(f"models:/{settings.tracking.sequence_model}/1")
    request = pd.DataFrame({"history": [["I0", "I1"], ["I4", "I5", "unknown"]], "k": [3, 2]})
    out = loaded.predict(request)
    assert out.groupby("row").size().tolist() == [3, 2]
    first = out[out["row"] == 0].sort_values("rank")
    assert first["item_id"].iloc[0] == "I2" and not set(first["item_id"]) & {"I0", "I1"}
    assert out[out["row"] == 1].sort_values("rank")["item_id"].iloc[0] == "I0"


def test_train_without_events_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="events"):
        train_sequence(load_settings(workspace=str(tmp_path / "empty")))
