"""Where the package finds the book's files: in a checkout, or inside an installed wheel.

In the repository (``make`` installs the package in editable mode) everything is read from the
checkout. Installed from a wheel (Colab, Binder, ``pip install``), the book pages, the bibliography and
the lock file that some chapters read come from a copy the wheel carries (``bigmodel_utils/book_data``,
written by ``setup.py`` at build time), read with :mod:`importlib.resources`. What exists only in a
checkout (the benchmarks' results) raises :class:`CheckoutRequired`, which says how to get one.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CACHE_DIR_ENV = "BIGMODEL_CACHE"
#: The files of the checkout that the wheel carries, by their path in the repository.
BOOK_DATA = ("book/*.md", "book/references.bib", "requirements.lock")
REPOSITORY_URL = "https://github.com/large-models-in-practice/book"


class CheckoutRequired(FileNotFoundError):
    """A file that only a clone of the repository holds was asked for from an installed package."""


def repository_root() -> Path | None:
    """The checkout this package was imported from, or None when it runs from an installed wheel."""
    root = PACKAGE_DIR.parent
    return root if (root / "_toc.yml").is_file() and (root / "book").is_dir() else None


def require_checkout(what: str) -> Path:
    """The checkout's root; without one, a clear error naming the remedy."""
    root = repository_root()
    if root is None:
        raise CheckoutRequired(f"{what} exists only in a clone of the book's repository, and this "
                               f"bigmodel_utils is an installed package ({PACKAGE_DIR}). Remedy: "
                               f"git clone {REPOSITORY_URL} && cd book && make setup, then open the "
                               "notebook from the clone")
    return root


def _bundled() -> Path:
    return Path(str(resources.files("bigmodel_utils") / "book_data"))


def book_dir() -> Path:
    """The folder holding the book's Markdown pages and ``references.bib``."""
    root = repository_root()
    return root / "book" if root is not None else _bundled() / "book"


def lock_file() -> Path:
    """``requirements.lock``: the exact versions the book was executed with."""
    root = repository_root()
    return root / "requirements.lock" if root is not None else _bundled() / "requirements.lock"


def cache_dir() -> Path:
    """Where trained models are cached between chapters: ``BIGMODEL_CACHE``, else ``_build/cache`` in a
    checkout, else the user's cache folder (an installed package must not write into site-packages)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    root = repository_root()
    if root is not None:
        return root / "_build" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bigmodel_utils"
