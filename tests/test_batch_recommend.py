"""`patron recommend batch`: every customer once per rank, rules and consent honoured, files written atomically."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.tables.store import read_table
from patron.cli.main import app
from serving.answers import recommendations
from serving.answers.recommendations import RESTOCK_REASON
from serving.batch.recommend import read_customer_ids, recommend_batch
from tests.conftest import purchases


@pytest.fixture(scope="module")
def batch(trained_workspace, refusing_customer, tmp_path_factory) -> pd.DataFrame:
    """The whole customer base at k=5 on 2 workers."""
    out = tmp_path_factory.mktemp("batch") / "recs.parquet"
    report = recommend_batch(trained_workspace.settings, out, k=5, workers=2, progress=False)
    frame = pd.read_parquet(out)
    assert report.rows == len(frame) and report.workers == 2 and report.without_consent >= 1
    return frame


def test_every_customer_is_there_once_per_rank_with_k_items(batch, trained_workspace):
    customers = read_table(trained_workspace.settings.tables_dir, "customers", columns=["customer_id"])
    assert set(batch["customer_id"]) == set(customers["customer_id"].astype(str))
    assert not batch.duplicated(["customer_id", "rank"]).any()
    assert not batch.duplicated(["customer_id", "item_id"]).any()
    ranks = batch.groupby("customer_id")["rank"].agg(["min", "max", "size"])
    assert (ranks["min"] == 1).all() and (ranks["max"] == 5).all() and (ranks["size"] == 5).all()
    # within a customer, ranks follow the scores
    assert (batch.sort_values(["customer_id", "rank"]).groupby("customer_id")["score"].diff().dropna() <= 0).all()


def test_purchased_and_out_of_stock_items_are_left_out_except_due_restocks(batch, trained_workspace):
    s = trained_workspace.settings
    bought = purchases(s).drop_duplicates().assign(bought=True)
    joined = batch.merge(bought, on=["customer_id", "item_id"], how="left")
    repeats = joined[joined["bought"].fillna(False).astype(bool)]
    assert len(repeats) and (repeats["reason"] == RESTOCK_REASON).all()
    products = read_table(s.tables_dir, "products")
    assert not set(batch["item_id"]) & set(products.loc[~products["in_stock"], "item_id"])


def test_customers_without_consent_get_marked_popular_lists(batch, refusing_customer):
    theirs = batch[batch["customer_id"] == refusing_customer]
    assert len(theirs) == 5 and (~theirs["personalisation_consent"]).all() and (theirs["source"] == "popular").all()
    assert (batch.loc[batch["source"] == "personal", "personalisation_consent"]).all()
    assert (batch["source"] == "personal").sum() > len(batch) / 2


def test_the_cli_writes_csv_for_a_list_of_customers_and_names_bad_options(trained_workspace, batch, tmp_path):
    ws = trained_workspace
    chosen = sorted(batch["customer_id"].unique())[:7]
    (tmp_path / "ids.txt").write_text("\n".join(chosen + chosen[:2] + ["C-NEW-1"]) + "\n")
    assert read_customer_ids(tmp_path / "ids.txt") == chosen + ["C-NEW-1"]
    out = tmp_path / "recs.csv"
    result = CliRunner().invoke(
        app,
        [
            "--config",
            str(ws.config),
            "recommend",
            "batch",
            "--out",
            str(out),
            "--k",
            "3",
            "--customers",
            str(tmp_path / "ids.txt"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 customers" in result.output
    csv = pd.read_csv(out, dtype={"customer_id": str, "item_id": str})
    assert sorted(csv["customer_id"].unique()) == sorted(chosen + ["C-NEW-1"])
    assert csv.groupby("customer_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    assert (csv.loc[csv["customer_id"] == "C-NEW-1", "source"] == "popular").all()
    same = batch[batch["customer_id"].isin(chosen) & (batch["rank"] <= 3)]  # 1 worker agrees with 2
    assert (
        csv[csv["customer_id"].isin(chosen)].sort_values(["customer_id", "rank"])["item_id"].tolist()
        == same.sort_values(["customer_id", "rank"])["item_id"].tolist()
    )
    for args, field in (
        (["--out", str(tmp_path / "recs.json")], "out"),
        (["--out", str(out), "--k", "1000"], "k"),
        (["--out", str(out), "--segment", "sleepy"], "segment"),
    ):
        bad = CliRunner().invoke(app, ["--config", str(ws.config), "recommend", "batch", *args])
        assert bad.exit_code == 2 and field in bad.output, bad.output


def test_a_failure_leaves_no_partial_file(trained_workspace, batch, monkeypatch, tmp_path):
    out = tmp_path / "recs.parquet"
    out.write_bytes(b"previous campaign file")
    victim = sorted(batch["customer_id"].unique())[-1]
    real = recommendations.recommend

    def failing(recommender, state, customer_id, *args, **kwargs):
        if customer_id == victim:
            raise RuntimeError("boom")
        return real(recommender, state, customer_id, *args, **kwargs)

    monkeypatch.setattr(recommendations, "recommend", failing)
    with pytest.raises(RuntimeError, match="boom"):  # raised in a worker process, surfaced here
        recommend_batch(trained_workspace.settings, out, k=3, workers=2, progress=False)
    monkeypatch.setattr(recommendations, "recommend", real)

    def torn_write(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", torn_write)
    with pytest.raises(OSError, match="disk full"):
        recommend_batch(trained_workspace.settings, out, k=3, customers=[victim], workers=1, progress=False)
    assert out.read_bytes() == b"previous campaign file" and [p.name for p in tmp_path.iterdir()] == ["recs.parquet"]
