"""The tools the book uses and the article's recommended reading, checked against reality.

The tools table is built from the installed environment (``importlib.metadata``) and compared with
``requirements.lock``, so the versions shown in the book are the versions that ran it. The reading
list records, for each work the article recommends (its section 7), whether the work exists and who
wrote it, with the book's bibliography key for the real publication.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .locations import book_dir, lock_file

LOCK_FILE = lock_file()
BIB_FILE = book_dir() / "references.bib"


@dataclass(frozen=True)
class Tool:
    """One tool: its PyPI distribution, what the book uses it for, and where."""

    name: str
    distribution: str
    role: str
    used_in: str


TOOLS: tuple[Tool, ...] = (
    Tool("PyTorch", "torch", "tensors, autograd, the hand-written models and training loops", "every chapter"),
    Tool("Keras 3", "keras", "the article's CNN, on the PyTorch backend", "CNN, mathematics, MNIST case study, image recognition"),
    Tool("NumPy", "numpy", "arrays, reference implementations of formulas", "every chapter"),
    Tool("scikit-learn", "scikit-learn", "classical models, metrics, search", "concepts, healthcare, fairness, language, speech, recommendation"),
    Tool("pandas", "pandas", "tables of results", "every chapter"),
    Tool("SciPy", "scipy", "optimisation, statistics, special functions", "mathematics, VAE, scaling laws, privacy, speech"),
    Tool("SymPy", "sympy", "symbolic derivatives in the mathematics chapter", "mathematics"),
    Tool("statsmodels", "statsmodels", "Holt–Winters and seasonal ARIMA forecasts", "forecasting"),
    Tool("Optuna", "optuna", "hyperparameter search on a validation split", "concepts"),
    Tool("ONNX Runtime", "onnxruntime", "fast inference of an exported model", "performance, efficiency"),
    Tool("Captum", "captum", "saliency and integrated gradients", "interpretability"),
    Tool("Opacus", "opacus", "differentially private training (DP-SGD)", "privacy"),
    Tool("sentence-transformers", "sentence-transformers", "the MiniLM sentence encoder", "language application"),
    Tool("librosa", "librosa", "MFCC features of speech", "speech application"),
    Tool("matplotlib", "matplotlib", "every figure", "every chapter"),
    Tool("JupyterLab", "jupyterlab", "reading and running the notebooks", "README"),
    Tool("papermill", "papermill", "executing notebooks with parameters (the runner)", "bigmodel_utils.run"),
    Tool("nbval", "nbval", "re-running notebooks in the tests, cell by cell", "tests"),
    Tool("Jupyter Book", "jupyter-book", "this book's HTML (version 1)", "make book"),
    Tool("sphinxcontrib-bibtex", "sphinxcontrib-bibtex", "the bibliography and its citations", "make book"),
)


def locked_versions(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """``{distribution: version}`` from a pip lock file of ``name==version`` lines."""
    if not Path(lock_file).is_file():
        raise FileNotFoundError(f"lock file {lock_file} not found; regenerate it with `make lock`")
    pins = {}
    for line in Path(lock_file).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[_normalise(m.group(1))] = m.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(distribution: str) -> str | None:
    """Installed version of a distribution, or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def tools_table(tools=TOOLS, lock_file: Path = LOCK_FILE):
    """A DataFrame: tool, role, where used, installed version, locked version."""
    import pandas as pd

    pins = locked_versions(lock_file)
    rows = [dict(tool=t.name, role=t.role, used_in=t.used_in, installed=installed_version(t.distribution),
                 locked=pins.get(_normalise(t.distribution))) for t in tools]
    return pd.DataFrame(rows).set_index("tool")


def _local(version: str | None) -> str | None:
    return version.split("+")[0] if isinstance(version, str) else None


def version_mismatches(table) -> list[str]:
    """Tools whose installed version differs from the lock (ignoring local tags such as ``+cpu``)."""
    return [tool for tool, row in table.iterrows() if _local(row["installed"]) != _local(row["locked"])]


@dataclass(frozen=True)
class Recommendation:
    """A work the article recommends, as it cites it, and what we found."""

    as_cited: str
    credited_to: str
    verdict: str  # "correct", "wrong authors", "not found"
    real_work: str
    bib_key: str | None


ARTICLE_READING: tuple[Recommendation, ...] = (
    Recommendation("Deep Learning (textbook)", "Goodfellow, Bengio, Courville", "correct",
                   "Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016", "goodfellow2016deep"),
    Recommendation("A Theoretical Investigation of the Feedforward Neural Network", "Geoffrey Hinton et al.",
                   "not found", "no such paper by Hinton or anyone else could be found", None),
    Recommendation("Learning Representations by Maximizing Mutual Information Between a Vision Model and Its "
                   "Keywords", "Google", "not found",
                   "closest real title: Bachman, Hjelm and Buchwalter, *Learning Representations by Maximizing "
                   "Mutual Information Across Views*, NeurIPS 2019 (Microsoft Research, not Google)",
                   "bachman2019amdim"),
    Recommendation("Unsupervised Representation Learning with Deep Convolutional Generative Adversarial "
                   "Networks", "Ian Goodfellow et al.", "wrong authors",
                   "Radford, Metz and Chintala, ICLR 2016 (the DCGAN paper); Goodfellow et al. 2014 introduced "
                   "GANs", "radford2016dcgan"),
    Recommendation("BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", "Google",
                   "correct", "Devlin, Chang, Lee and Toutanova, NAACL 2019 (Google AI Language)",
                   "devlin2019bert"),
)


def reading_table(items=ARTICLE_READING):
    """The article's recommended works as a DataFrame with our verdict."""
    import pandas as pd

    return pd.DataFrame([dict(as_cited=r.as_cited, credited_to=r.credited_to, verdict=r.verdict,
                              real_work=r.real_work, bib_key=r.bib_key or "–") for r in items])


def bib_keys(bib_file: Path) -> set[str]:
    """Entry keys of a BibTeX file (to check that every key the book names exists)."""
    if not Path(bib_file).is_file():
        raise FileNotFoundError(f"bibliography {bib_file} not found")
    return set(re.findall(r"^@\w+\{([^,\s]+),", Path(bib_file).read_text(), flags=re.M))
