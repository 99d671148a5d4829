"""Every chapter executes in the smoke profile through the runner, and follows the book's conventions.

(nbval, configured in pyproject.toml, separately re-runs the committed notebooks/ and compares
their outputs cell by cell.)
"""
import json
import re
import subprocess
import sys

import nbformat
import pytest

from bigmodel_utils import run

CHAPTERS = run.book_order()


def code_and_markdown(nb):
    """Cell sources without papermill's injected-parameters cell."""
    return [(c.cell_type, c.source) for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.notebooks
def test_every_notebook_runs_in_smoke_profile_through_the_runner(tmp_path, root):
    proc = subprocess.run(
        [sys.executable, "-m", "bigmodel_utils.run", "--profile", "smoke", "--output-dir", str(tmp_path), "--no-progress"],
        cwd=root, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "execution_report.json").read_text())
    assert list(report["notebooks"]) == CHAPTERS
    for name, entry in report["notebooks"].items():
        assert entry["status"] == "ok" and entry["device"] == "cpu" and entry["profile"] == "smoke", name
        print(f"{name}: {entry['seconds']} s, {entry['peak_memory_mb']} MB")
        assert nbformat.read(tmp_path / f"{name}.ipynb", 4).cells


@pytest.mark.parametrize("name", CHAPTERS)
def test_published_copy_has_the_same_source_and_full_outputs(name, root):
    src = nbformat.read(root / "notebooks" / f"{name}.ipynb", 4)
    pub = nbformat.read(root / "book" / "chapters" / f"{name}.ipynb", 4)
    assert code_and_markdown(src) == code_and_markdown(pub), "re-run `make full` after editing notebooks/"
    assert src.metadata["papermill"]["parameters"]["profile"] == "smoke"
    assert pub.metadata["papermill"]["parameters"]["profile"] == "full"


@pytest.mark.parametrize("folder", ["notebooks", "book/chapters"])
@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_conventions(name, folder, root):
    nb = nbformat.read(root / folder / f"{name}.ipynb", 4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "a title first"
    tags = [c.metadata.get("tags", []) for c in cells]
    assert any("parameters" in t for t in tags), "a cell tagged 'parameters'"
    first_code = next(c for c in cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
                      and "injected-parameters" not in c.metadata.get("tags", []))
    assert "setup_notebook(profile, device, seed)" in first_code.source
    assert any(o.get("text", "").startswith("Environment:") for o in first_code.outputs), "environment report printed"
    assert any(c.cell_type == "code" and c.source.startswith("# Check") and "assert" in c.source for c in cells)
    assert any(c.cell_type == "markdown" and re.search(r"^## Summary", c.source, re.M) for c in cells), "a summary"
    assert nb.metadata["kernelspec"]["name"] == "bigmodel-cpu"
    for c in cells:
        if c.cell_type == "code":
            assert c.execution_count is not None, "executed"
            assert not any(o.output_type == "error" for o in c.outputs), "no outputs of a failed run"
            assert len(c.source.splitlines()) <= 30, "short cells"
            if any("image/png" in o.get("data", {}) for o in c.outputs):
                fig = c.metadata.get("mystnb", {})
                assert fig.get("figure", {}).get("caption") and fig.get("image", {}).get("alt"), "caption and alt text"
