import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
# Under pytest-xdist (`make test` runs `-n auto`) each worker executes its own chapter; two kernels
# with two threads each on two cores would oversubscribe them, so each worker gets its share of the
# cores (at most 2, the book's default) unless BIGMODEL_THREADS says otherwise. The committed outputs
# validate with any thread count (tests/output_tolerances.yml).
if os.environ.get("PYTEST_XDIST_WORKER") and "BIGMODEL_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["BIGMODEL_THREADS"] = str(max(1, min(2, (os.cpu_count() or 1) // _workers)))
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mnist():
    from bigmodel_utils.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The HTML book built strictly (-W) from the committed notebooks, once per test session."""
    import subprocess

    out = tmp_path_factory.mktemp("book")
    jb = VENV_BIN / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", "--path-output", str(out), "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


# Chapters executed by the notebook tests, gathered from every worker for the summary at the end.
CHAPTER_RUNS: list[dict] = []


@pytest.fixture
def executed_chapters(request):
    """A dict the notebook tests fill with {label: runner entry}; reported in the terminal summary."""
    runs: dict = {}
    yield runs
    for label, entry in runs.items():
        request.node.user_properties.append(("chapter_run", {"chapter": label, "seconds": entry["seconds"],
                                                             "peak_memory_mb": entry["peak_memory_mb"],
                                                             "threads": entry.get("threads")}))


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        CHAPTER_RUNS.extend(v for k, v in report.user_properties if k == "chapter_run")


def pytest_terminal_summary(terminalreporter):
    if not CHAPTER_RUNS:
        return
    tr = terminalreporter
    total = sum(r["seconds"] for r in CHAPTER_RUNS)
    tr.section(f"chapters executed: {len(CHAPTER_RUNS)}, {total:.0f} s in all; the ten slowest")
    for r in sorted(CHAPTER_RUNS, key=lambda r: -r["seconds"])[:10]:
        tr.write_line(f"{r['seconds']:7.1f} s  {r['peak_memory_mb']:6d} MB  {r['threads']} thread(s)  {r['chapter']}")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests of the built book share one build: keep them on one xdist worker (--dist loadgroup)."""
    for item in items:
        if item.get_closest_marker("book"):
            item.add_marker(pytest.mark.xdist_group("book"))
