"""Every notebook in notebooks/ is stored without outputs and runs top to bottom on a small workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from patron.config import REPO_ROOT
from tests.conftest import Workspace, small_workspace

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_explore_data", "02_churn_experiment", "03_recommender_experiment", "04_bring_your_own_data"]
CELL_TIMEOUT_S = 300
# Beyond the shared small workspace: fewer bootstrap resamples for the notebook's comparison.
EXTRA = {"reports": {"n_boot": 200}}


def test_every_notebook_is_there_and_stored_without_outputs() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        book = json.loads(path.read_text())
        code = [c for c in book["cells"] if c["cell_type"] == "code"]
        assert code, f"{path.name} has no code"
        for cell in code:
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: outputs not stripped"


@pytest.fixture(scope="module")
def notebook_workspace(ingested_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A small workspace with the shared synthetic tables and no models: the notebooks train what they need."""
    ws = small_workspace(tmp_path_factory.mktemp("notebooks"))
    ws.config.write_text(yaml.safe_dump({**yaml.safe_load(ws.config.read_text()), **EXTRA}))
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    return ws


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, notebook_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATRON_CONFIG", str(notebook_workspace.config))  # the kernel inherits the environment
    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()  # raises on a failing cell
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in book.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert str(notebook_workspace.settings.workspace) in text  # it ran on the test workspace, not the default one
    if path.stem == "02_churn_experiment":
        assert "bootstrap interval" in text and ("is now champion" in text or "not promoted" in text)
    if path.stem == "04_bring_your_own_data":
        assert "3 quarantined" in text and "churn: registered version" in text
