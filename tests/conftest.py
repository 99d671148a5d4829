import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
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
