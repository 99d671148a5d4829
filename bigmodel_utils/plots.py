"""Accessible matplotlib figures: colour-blind-safe colours (Okabe–Ito), and line
styles and markers that keep the curves apart in greyscale. Every function
returns the figure and gives it a title and labelled axes.
"""
from __future__ import annotations

import numpy as np

# Okabe & Ito (2008), "Color Universal Design": distinguishable for the common colour-vision deficiencies.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def use_book_style() -> None:
    """Set matplotlib defaults shared by all chapters (palette, sizes, grid)."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "axes.prop_cycle": cycler(color=OKABE_ITO[:6]) + cycler(linestyle=["-", "--", ":", "-.", "-", "--"]),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
            "image.cmap": "cividis",
        }
    )


def learning_curves(history, metrics=("loss", "accuracy"), title: str = "Learning curves"):
    """Training and validation curves, one panel per metric, from ``fit_classifier``'s history."""
    import matplotlib.pyplot as plt

    missing = [m for m in metrics if m not in history]
    if missing:
        raise KeyError(f"history has no column(s) {missing}; columns are {list(history.columns)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        ax.plot(history["epoch"], history[m], color=OKABE_ITO[5], linestyle="-", marker="o", label="training")
        if f"val_{m}" in history:
            ax.plot(history["epoch"], history[f"val_{m}"], color=OKABE_ITO[6], linestyle="--", marker="s", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(m)
        ax.set_xticks(list(history["epoch"]))
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(cm: np.ndarray, title: str = "Confusion matrix (test set)"):
    """Counts with every cell annotated, so the figure reads without colour at all."""
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {cm.shape}")
    n = cm.shape[0]
    fig, ax = plt.subplots(figsize=(0.55 * n + 2, 0.5 * n + 1.5))
    shown = np.log1p(cm)
    ax.imshow(shown, cmap="Greys")
    limit = shown.max() * 0.6
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > limit else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    ax.grid(False)
    fig.tight_layout()
    return fig



def bare_axes(axes) -> None:
    """Remove ticks and grid from image panels (an iterable of matplotlib Axes): pixels need no scale,
    and the book style's grid would draw over them. Keeps axis labels, unlike ``ax.axis("off")``."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)


def image_gallery(images, captions, title: str, ncols: int = 8):
    """A grid of greyscale images, each with a short caption underneath."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("image_gallery needs at least one image")
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.7 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(np.squeeze(img), cmap="gray_r", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
        ax.set_title(cap, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def bar_chart(labels, values, title: str, xlabel: str, ylabel: str, reference: float | None = None):
    """Plain bars with hatching and value labels; an optional dashed reference line."""
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels but {len(values)} values")
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(values) + 2), 3.2))
    bars = ax.bar([str(label) for label in labels], values, color=OKABE_ITO[5], edgecolor="black", hatch="//")
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color=OKABE_ITO[6], linestyle="--", label=f"reference {reference:g}")
        ax.legend(loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def line_chart(x, series: dict, title: str, xlabel: str, ylabel: str, logy: bool = False,
                 reference: tuple[float, str] | None = None):
    """Several curves over a shared x axis, told apart by colour, line style and marker (book style).

    ``series`` maps a label to y values; ``reference`` is an optional ``(value, label)``
    drawn as a dashed horizontal line (e.g. a trivial baseline).
    """
    import matplotlib.pyplot as plt

    if not series:
        raise ValueError("give at least one series")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for k, (label, y) in enumerate(series.items()):
        y = np.asarray(y, dtype=float)
        if len(y) != len(x):
            raise ValueError(f"series {label!r} has {len(y)} values for {len(x)} x positions")
        ax.plot(x, y, color=OKABE_ITO[(k + 5) % len(OKABE_ITO)], linestyle=LINESTYLES[k % len(LINESTYLES)],
                marker=MARKERS[k % len(MARKERS)], markevery=max(1, len(x) // 12), label=label)
    if reference is not None:
        ax.axhline(reference[0], color="black", linestyle=(0, (1, 3)), label=reference[1])
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_panels(matrices: dict, title: str, xlabel, ylabel: str, annotate: bool = False,
                   cmap: str = "cividis"):
    """Matrices side by side, one panel each, titled by their dict keys, with a shared colour bar.

    ``xlabel`` is one label for every panel or a list with one label per panel.

    Uses a perceptually uniform, colour-blind-safe map (cividis by default) that also
    reads in greyscale; ``annotate`` writes every value in its cell (small matrices).
    """
    import matplotlib.pyplot as plt

    if not matrices:
        raise ValueError("give at least one matrix")
    arrays = {k: np.asarray(v, dtype=float) for k, v in matrices.items()}
    if any(a.ndim != 2 for a in arrays.values()):
        raise ValueError("every matrix must be two-dimensional")
    xlabels = [xlabel] * len(arrays) if isinstance(xlabel, str) else list(xlabel)
    if len(xlabels) != len(arrays):
        raise ValueError(f"{len(xlabels)} x labels for {len(arrays)} matrices")
    vmin = min(float(a.min()) for a in arrays.values())
    vmax = max(float(a.max()) for a in arrays.values())
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.4 * len(arrays) + 0.8, 3.6), squeeze=False,
                             layout="constrained")
    for n, (ax, (name, a)) in enumerate(zip(axes[0], arrays.items())):
        im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        if annotate:
            for (i, j), v in np.ndenumerate(a):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < (vmin + vmax) / 2 else "black")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabels[n])
        if n == 0:  # the panels share their y axis meaning; one label avoids overlaps
            ax.set_ylabel(ylabel)
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(title)
    return fig


def interval_chart(labels, estimates, lows, highs, title: str, xlabel: str, groups=None,
                   reference: tuple[float, str] | None = None):
    """Estimates with their confidence intervals as horizontal points and bars, one row per label, top to
    bottom in the given order; ``groups`` (one name per row) sets marker and colour, so rows of one kind
    read alike in greyscale; ``reference`` ``(value, label)`` is a dotted vertical line (e.g. chance)."""
    import matplotlib.pyplot as plt

    est, lo, hi = (np.asarray(v, dtype=float) for v in (estimates, lows, highs))
    n = len(labels)
    if not n or not (len(est) == len(lo) == len(hi) == n):
        raise ValueError(f"need one estimate, low and high per label: {n} labels, {len(est)}, {len(lo)}, {len(hi)}")
    if np.any(lo > est + 1e-12) or np.any(hi < est - 1e-12):
        raise ValueError("each interval must contain its estimate (low <= estimate <= high)")
    groups = list(groups) if groups is not None else [""] * n
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} labels")
    kinds = list(dict.fromkeys(groups))
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * n + 1.4))
    y = np.arange(n)[::-1]
    for k, kind in enumerate(kinds):
        rows = [i for i, g in enumerate(groups) if g == kind]
        colour = OKABE_ITO[(k + 5) % len(OKABE_ITO)]
        ax.errorbar(est[rows], y[rows], xerr=[est[rows] - lo[rows], hi[rows] - est[rows]], fmt=MARKERS[k % len(MARKERS)],
                    color=colour, ecolor=colour, capsize=3, markersize=6, label=kind or None)
    if reference is not None:
        ax.axvline(reference[0], color="black", linestyle=(0, (1, 3)), label=reference[1])
    ax.set_yticks(y)
    ax.set_yticklabels([str(lab) for lab in labels])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if any(groups) or reference is not None:
        ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return fig
