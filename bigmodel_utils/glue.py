"""Numbers that a chapter's prose quotes: glued for the book's pages, and shown in JupyterLab too.

MyST-NB's ``{glue:text}`` roles fill in the rendered pages, but JupyterLab (with jupyterlab-myst too)
cannot read glued values, so a Summary opened there showed blanks where its numbers belong.
:func:`glue` records every value it glues; :func:`summary_numbers` shows the values a Summary quotes
as a small table in the notebook, in a cell that the book's pages remove (they show the prose).
"""
from __future__ import annotations

_GLUED: dict[str, object] = {}


def glue(name: str, value, display: bool = False) -> None:
    """``myst_nb.glue``, remembering the value for :func:`summary_numbers`."""
    from myst_nb import glue as myst_glue

    _GLUED[name] = value
    myst_glue(name, value, display=display)


def summary_numbers(*names: str):
    """A table of the glued values ``names`` (in that order), for readers of the notebook itself."""
    import pandas as pd

    if not names:
        raise ValueError("name the glued values that the summary quotes")
    missing = [n for n in names if n not in _GLUED]
    if missing:
        raise KeyError(f"not glued in this kernel: {', '.join(missing)}; run the cells above first")
    return pd.DataFrame({"value": [_GLUED[n] for n in names]}, index=pd.Index(list(names), name="quoted in the summary"))
