"""Every chapter executes once in the smoke profile through the runner, reproduces its committed outputs
on this machine (whatever its CPU and thread count), and follows the book's conventions."""
import re

import nbformat
import pytest

from bigmodel_utils import output_check, run
from bigmodel_utils.notebook_copies import parameter_values, relink

CHAPTERS = run.book_order()


def code_and_markdown(nb):
    """Cell sources, the parameters cell aside (each copy holds the values it was executed with)."""
    return [(c.cell_type, c.source) for c in nb.cells if "parameters" not in c.metadata.get("tags", [])]


TOLERANCES = output_check.load_tolerances()
# one Keras training chapter, one PyTorch training chapter, and the float-heavy mathematics
PORTABILITY_CHAPTERS = ("mnist_cnn", "transformer", "mathematics")


def committed_threads(path) -> int:
    """The thread count the committed outputs were produced with (from the environment line)."""
    nb = nbformat.read(path, 4)
    for c in nb.cells:
        for o in c.get("outputs", []):
            m = re.search(r"\| (\d+) CPU threads", o.get("text", ""))
            if m:
                return int(m.group(1))
    raise AssertionError(f"{path}: no environment line with the thread count")


def execute_and_compare(name, root, out_dir, executed):
    src = root / "notebooks" / f"{name}.ipynb"
    entry = run.execute_one(src, out_dir / f"{name}.ipynb", profile="smoke", kernel="cpu", seed=0, progress=False)
    executed[name] = entry
    assert entry["status"] == "ok" and entry["device"] == "cpu" and entry["profile"] == "smoke"
    mismatches = output_check.compare_notebooks(src, out_dir / f"{name}.ipynb", TOLERANCES.get(name, {}))
    assert not mismatches, output_check.render_mismatches(name, mismatches)
    return entry


@pytest.mark.notebooks
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_in_smoke_profile_and_reproduces_committed_outputs(name, root, tmp_path_factory, executed_chapters):
    """Each chapter is executed once, through the runner, and its outputs are compared with the committed
    ones portably (bigmodel_utils.output_check): its # Check cells run, and its printed results agree
    with what another machine produced, within the measured tolerances."""
    execute_and_compare(name, root, tmp_path_factory.mktemp("smoke"), executed_chapters)


@pytest.mark.notebooks
@pytest.mark.parametrize("name", PORTABILITY_CHAPTERS)
def test_chapter_reproduces_committed_outputs_with_another_thread_count(name, root, tmp_path, monkeypatch,
                                                                       executed_chapters):
    """The committed outputs came from one machine and thread count; re-executed with the other thread
    count (and a fresh model cache, so that training really reruns), they still validate."""
    threads = 1 if committed_threads(root / "notebooks" / f"{name}.ipynb") != 1 else 2
    monkeypatch.setenv("BIGMODEL_THREADS", str(threads))
    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path / "cache"))
    entry = execute_and_compare(name, root, tmp_path, {})
    assert entry["threads"] == threads
    executed_chapters[f"{name} ({threads} thread{'s' if threads > 1 else ''}, portability)"] = entry


@pytest.mark.parametrize("name", CHAPTERS)
def test_published_copy_has_the_same_source_and_full_outputs(name, root):
    src = nbformat.read(root / "notebooks" / f"{name}.ipynb", 4)
    pub = nbformat.read(root / "book" / "chapters" / f"{name}.ipynb", 4)
    relinked = relink(nbformat.read(root / "notebooks" / f"{name}.ipynb", 4), root / "notebooks", root / "book" / "chapters")
    assert code_and_markdown(relinked) == code_and_markdown(pub), "re-run `make full` after editing notebooks/"
    for nb, profile in ((src, "smoke"), (pub, "full")):
        assert nb.metadata["papermill"]["parameters"]["profile"] == profile
        assert parameter_values(nb) == {"profile": profile, "device": "auto", "seed": 0}, "one parameters cell, as run"
        assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("folder", ["notebooks", "book/chapters"])
@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_conventions(name, folder, root):
    nb = nbformat.read(root / folder / f"{name}.ipynb", 4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "a title first"
    tags = [c.metadata.get("tags", []) for c in cells]
    assert any("parameters" in t for t in tags), "a cell tagged 'parameters'"
    assert [c for c in cells if c.cell_type == "code"][0].metadata["tags"][0] == "install-cell", "install cell first"
    first_code = next(c for c in cells if c.cell_type == "code" and not {"parameters", "install-cell"} & set(
        c.metadata.get("tags", [])))
    assert "setup_notebook(profile, device, seed)" in first_code.source
    assert any(o.get("text", "").startswith("Environment:") for o in first_code.outputs), "environment report printed"
    assert any(c.cell_type == "code" and c.source.startswith("# Check") and "assert" in c.source for c in cells)
    assert any(c.cell_type == "markdown" and re.search(r"^## Summary", c.source, re.M) for c in cells), "a summary"
    assert nb.metadata["kernelspec"]["name"] == "bigmodel-cpu"
    for c in cells:
        if c.cell_type == "code":
            # the install cell prints nothing in the book's kernels; it was added without re-executing
            assert c.execution_count is not None or "install-cell" in c.metadata.get("tags", []), "executed"
            assert not any(o.output_type == "error" for o in c.outputs), "no outputs of a failed run"
            assert len(c.source.splitlines()) <= 30, "short cells"
            if any("image/png" in o.get("data", {}) for o in c.outputs):
                fig = c.metadata.get("mystnb", {})
                assert fig.get("figure", {}).get("caption") and fig.get("image", {}).get("alt"), "caption and alt text"
