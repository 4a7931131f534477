"""The documentation builds offline with warnings as errors, and the tutorials run and are stored with outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
EXPECTED_TUTORIALS = {
    "quickstart.ipynb",
    "squidpy_workflow.ipynb",
    "spatialdata_workflow.ipynb",
    "benchmarking.ipynb",
}


def test_the_tutorials_exist():
    assert EXPECTED_TUTORIALS <= {p.name for p in TUTORIALS}


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_is_stored_with_outputs_of_a_full_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a tutorial without code"
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name}: some cells were never run; execute the notebook and save it"
    assert counts == sorted(counts), f"{path.name}: cells were run out of order"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: stored outputs contain an error"
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for c in code for o in c.outputs
    ), f"{path.name}: no figure in the stored outputs"


@pytest.mark.docs
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_executes(path, tmp_path, monkeypatch):
    """Every notebook runs top to bottom in the reduced mode (few epochs) the docs describe."""
    monkeypatch.setenv("SPALSTF_TUTORIAL_MODE", "quick")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}, allow_errors=False
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


@pytest.mark.docs
def test_docs_build_offline_without_warnings(tmp_path):
    """``sphinx-build -W``: any warning (broken reference, bad docstring markup, missing page) fails the build."""
    out = tmp_path / "html"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    # an unroutable proxy: if the build tried to download anything (intersphinx inventories), it would fail or warn
    env.update({"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html", "docs", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    for page in [
        "index.html",
        "api.html",
        "method.html",
        "benchmarks.html",
        "changelog.html",
        "tutorials/quickstart.html",
        "tutorials/squidpy_workflow.html",
        "tutorials/spatialdata_workflow.html",
        "tutorials/benchmarking.html",
        "generated/spalstf.tl.spalstf_impute.html",
        "generated/spalstf.get.imputed.html",
        "generated/spalstf.datasets.to_spatialdata.html",
        "generated/spalstf.model.SpaLSTF.html",
        "generated/spalstf.model.SpaLSTF.train.html",
        "generated/spalstf.pl.spatial_genes.html",
        "generated/spalstf.datasets.drosophila_embryo.html",
        "generated/spalstf.metrics.spcc.html",
    ]:
        assert (out / page).is_file(), f"missing page {page}"
    # the stored figures of the tutorials are rendered into the pages
    for page in ["quickstart", "squidpy_workflow", "spatialdata_workflow", "benchmarking"]:
        html = (out / "tutorials" / f"{page}.html").read_text()
        assert html.count("<img") >= 2, f"tutorials/{page}.html shows no stored figures"
