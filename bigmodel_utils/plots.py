"""Accessible matplotlib figures: colour-blind-safe colours (Okabe–Ito), and line
styles and markers that keep the curves apart in greyscale. Every function
returns the figure and gives it a title and labelled axes.

Figures must also be readable at the size the book shows them: :func:`readability_problems`
checks that (text size on the page, overlapping labels, width), and :func:`use_book_style`
makes every chapter run that check on each figure it shows.
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np

# Okabe & Ito (2008), "Color Universal Design": distinguishable for the common colour-vision deficiencies.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")

#: Width of the book's HTML content column at a 1280 px window; a wider PNG is scaled down to it.
COLUMN_PX = 780
#: Widest figure (inches at 100 dpi) that the column shows at full size: the inline backend saves the
#: tight bounding box with 0.1 in of padding on each side.
MAX_WIDTH_IN = 7.6
#: Smallest text, in points at the book's 100 dpi, that is still readable on the page.
MIN_POINTS = 9
#: The runner sets this to a file; each shown figure with problems appends one JSON line to it.
FIGURE_REPORT_ENV = "BIGMODEL_FIGURE_REPORT"

BOOK_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 13,
    "image.cmap": "cividis",
}


def use_book_style() -> None:
    """Set matplotlib defaults shared by all chapters (palette, sizes, grid).

    Inside IPython with the inline backend it also checks every figure before it is shown (see
    :func:`install_figure_check`).
    """
    import matplotlib as mpl
    from cycler import cycler

    ip = _ipython()
    if ip is not None:
        _load_inline_backend()
    mpl.rcParams.update(
        {"axes.prop_cycle": cycler(color=OKABE_ITO[:6]) + cycler(linestyle=["-", "--", ":", "-.", "-", "--"]),
         **BOOK_RC}
    )
    if ip is not None:
        install_figure_check(ip)


def _load_inline_backend() -> None:
    """Import the inline backend now, if it is the chosen one: on import it registers its ``flush_figures``
    callback and sets its rc, which must happen before the book's rc and the figure check are installed."""
    import importlib

    import matplotlib as mpl

    try:
        backend = mpl.get_backend(auto_select=False)
    except TypeError:  # matplotlib < 3.10
        backend = mpl.rcParams["backend"]
    if isinstance(backend, str) and backend in ("inline", "module://matplotlib_inline.backend_inline"):
        with contextlib.suppress(ImportError):
            importlib.import_module("matplotlib_inline.backend_inline")


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


# --- readability ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _recording_drawn_texts(drawn: list):
    """While active, every Text that actually draws (visible, not empty, inside a drawn parent) is appended."""
    from matplotlib.text import Text

    original = Text.draw

    def draw(self, renderer, *args, **kwargs):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer, *args, **kwargs)

    Text.draw = draw
    try:
        yield
    finally:
        Text.draw = original


def _shown_width_px(fig, renderer) -> float:
    """Width of the figure's PNG: the inline backend saves with ``bbox_inches="tight"``, which grows the
    image for text outside the figure (never counted narrower than the figure itself)."""
    import matplotlib as mpl

    width = fig.get_figwidth()
    with contextlib.suppress(Exception):
        width = max(width, fig.get_tightbbox(renderer).width + 2 * float(mpl.rcParams["savefig.pad_inches"]))
    return width * fig.dpi


def _short(text, n: int = 30) -> str:
    s = " ".join(str(text.get_text() if hasattr(text, "get_text") else text).split())
    return repr(s if len(s) <= n else s[: n - 1] + "…")


def _axes_name(ax, k: int) -> str:
    title = ax.get_title() or ax.get_title("left") or ax.get_ylabel()
    return f"panel {k + 1}" + (f" ({_short(title, 24)})" if title else "")


def _outline(text, renderer) -> np.ndarray:
    """The four corners (pixels) of a text's box as drawn: for slanted text the rotated rectangle, not
    its axis-aligned extent (neighbouring slanted tick labels have overlapping extents but do not touch)."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation() % 180
    if angle % 90 < 1e-6:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    text.set_rotation(0)
    try:
        flat = text.get_window_extent(renderer)
    finally:
        text.set_rotation(angle)
    w, h = flat.width, flat.height
    if angle > 90:  # a w × h box turned by 90 + φ is an h × w box turned by φ
        w, h, angle = h, w, angle - 90
    s = np.sin(np.radians(angle))
    return np.array([[box.x0 + h * s, box.y0], [box.x1, box.y0 + w * s], [box.x1 - h * s, box.y1],
                     [box.x0, box.y1 - w * s]])


def _overlap(a: np.ndarray, b: np.ndarray, tol: float = 1.0) -> bool:
    """Whether two convex outlines overlap by more than ``tol`` pixels (separating-axis test)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            norm = np.hypot(ex, ey)
            if norm < 1e-9:
                continue
            axis = np.array([-ey, ex]) / norm
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tol:
                return False
    return True


def _axes_texts(ax, drawn: set) -> list:
    """The titles, axis labels and tick labels of one axes that were drawn."""
    texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
    for axis in (ax.xaxis, ax.yaxis):
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            texts += [tick.label1, tick.label2]
    return [t for t in texts if id(t) in drawn]


def _tick_label_overlaps(ax, name: str, drawn: set, renderer) -> list[str]:
    problems = []
    for letter, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        labels = [t for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                  for t in (tick.label1, tick.label2) if id(t) in drawn]
        boxes = [(t, _outline(t, renderer)) for t in labels]
        for i, (t1, b1) in enumerate(boxes):
            hit = next(((t2, b2) for t2, b2 in boxes[i + 1:] if _overlap(b1, b2)), None)
            if hit is not None:
                problems.append(f"{letter} tick labels {_short(t1)} and {_short(hit[0])} of {name} overlap")
                break
    return problems


def readability_problems(fig, column_px: int = COLUMN_PX, min_points: float = MIN_POINTS) -> list[str]:
    """What makes ``fig`` hard to read at the size the book's page shows it; an empty list if nothing.

    The page shows a PNG at most ``column_px`` wide, so a wider figure is scaled down with its text.
    Reported: every drawn text (titles, suptitle, axis and tick labels, legend, annotations) whose size
    on the page, ``fontsize × min(1, column_px / width_px)``, is under ``min_points``; tick labels that
    overlap within one axis; titles and labels of neighbouring panels (or the suptitle) that overlap;
    a figure wider than ``2 × column_px`` (shown at less than half its size).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    drawn_list: list = []
    with _recording_drawn_texts(drawn_list):
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = {id(t) for t in drawn_list}
    width = _shown_width_px(fig, renderer)
    scale = min(1.0, column_px / width)
    problems = []
    if width > 2 * column_px:
        problems.append(f"the figure is {width:.0f} px wide, shown at {scale:.0%} of its size "
                        f"(over 2 × {column_px} px)")
    small: dict[float, list] = {}  # font size -> texts under min_points on the page
    for t in drawn_list:
        if t.get_fontsize() * scale < min_points - 1e-6:
            small.setdefault(t.get_fontsize(), []).append(t)
    for size, texts in sorted(small.items()):
        examples = ", ".join(list(dict.fromkeys(_short(t, 20) for t in texts))[:3])
        many = f"{len(texts)} texts" if len(texts) > 1 else "text"
        how = f"font size {size:g}" + (f" shown at {scale:.0%}" if scale < 1 else "")
        problems.append(f"{many} {examples} {'are' if len(texts) > 1 else 'is'} {size * scale:.1f} pt on the page "
                        f"({how}; at least {min_points:g} pt)")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    names = [_axes_name(ax, k) for k, ax in enumerate(axes)]
    for ax, name in zip(axes, names):
        problems += _tick_label_overlaps(ax, name, drawn, renderer)
    groups = [(name, [(t, _outline(t, renderer)) for t in _axes_texts(ax, drawn)])
              for ax, name in zip(axes, names)]
    figure_texts = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None and id(t) in drawn]
    groups.append(("the figure", [(t, _outline(t, renderer)) for t in figure_texts]))
    for i, (name1, texts1) in enumerate(groups):
        for name2, texts2 in groups[i + 1:]:
            hit = next(((t1, t2) for t1, b1 in texts1 for t2, b2 in texts2 if _overlap(b1, b2)), None)
            if hit is not None:
                problems.append(f"{_short(hit[0])} of {name1} overlaps {_short(hit[1])} of {name2}")
    return problems


def figure_title(fig) -> str:
    """The suptitle of ``fig``, else its first axes title (empty if it has neither)."""
    if fig._suptitle is not None and fig._suptitle.get_text():
        return fig._suptitle.get_text()
    return next((t for ax in fig.axes for t in (ax.get_title(), ax.get_title("left")) if t), "")


def report_open_figures() -> list[dict]:
    """Check every open pyplot figure; append one JSON line per figure with problems to the file named by
    ``$BIGMODEL_FIGURE_REPORT`` (if set). Returns those records."""
    from matplotlib._pylab_helpers import Gcf

    records = []
    for manager in Gcf.get_all_fig_managers():
        fig = manager.canvas.figure
        try:
            problems = readability_problems(fig)
        except Exception as err:  # noqa: BLE001 - a figure that cannot be drawn fails when shown anyway
            problems = [f"the figure could not be drawn for the readability check: {type(err).__name__}: {err}"]
        if problems:
            records.append({"problems": problems, "title": figure_title(fig)})
    path = os.environ.get(FIGURE_REPORT_ENV)
    if path and records:
        with open(path, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return records


def _checked(original):
    """``original`` (a flush or show function) preceded by :func:`report_open_figures`."""
    if getattr(original, "_book_checked", False):
        return original

    def wrapper(*args, **kwargs):
        with contextlib.suppress(Exception):  # the check must never keep a figure from being shown
            report_open_figures()
        return original(*args, **kwargs)

    wrapper._book_checked = True
    wrapper.__wrapped__ = original
    wrapper.__name__ = getattr(original, "__name__", "flush_figures")
    return wrapper


def install_figure_check(ip) -> bool:
    """Replace the inline backend's ``flush_figures`` post_execute callback of the shell ``ip`` by a
    wrapper that first runs :func:`report_open_figures`, and do the same for ``pyplot.show`` (which the
    inline backend uses to show and close figures in the middle of a cell). Idempotent; returns whether
    a flush callback was found."""
    callbacks = ip.events.callbacks.get("post_execute", [])
    found = False
    for k, func in enumerate(callbacks):
        if getattr(func, "_book_checked", False) or (
                getattr(func, "__name__", "") == "flush_figures" and "inline" in getattr(func, "__module__", "")):
            callbacks[k] = _checked(func)
            found = True
    if found:
        import matplotlib.pyplot as plt

        plt.show = _checked(plt.show)
    return found


def learning_curves(history, metrics=("loss", "accuracy"), title: str = "Learning curves"):
    """Training and validation curves, one panel per metric, from ``fit_classifier``'s history."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    missing = [m for m in metrics if m not in history]
    if missing:
        raise KeyError(f"history has no column(s) {missing}; columns are {list(history.columns)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(min(3.8 * len(metrics), MAX_WIDTH_IN), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        ax.plot(history["epoch"], history[m], color=OKABE_ITO[5], linestyle="-", marker="o", label="training")
        if f"val_{m}" in history:
            ax.plot(history["epoch"], history[f"val_{m}"], color=OKABE_ITO[6], linestyle="--", marker="s", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(m)
        if len(history) <= 10:
            ax.set_xticks(list(history["epoch"]))
        else:  # one label per epoch would crowd the axis
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
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
    fig, ax = plt.subplots(figsize=(min(0.5 * n + 2.2, MAX_WIDTH_IN), min(0.48 * n + 1.6, 7.8)))
    shown = np.log1p(cm)
    ax.imshow(shown, cmap="Greys")
    limit = shown.max() * 0.6
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if shown[i, j] > limit else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    ax.grid(False)
    fig.tight_layout()
    return fig



def wrapped(text: str, width_in: float, fontsize: float = 13) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (a title that would
    otherwise stick out of its figure and widen the picture)."""
    import textwrap

    per_line = max(12, int(width_in * 72 / (0.56 * fontsize)))
    lines = textwrap.wrap(str(text), per_line, break_long_words=False)
    if len(lines) > 1:  # balance the lines: no short last line
        even = -(-len(str(text)) // len(lines))
        while len(balanced := textwrap.wrap(str(text), even, break_long_words=False)) > len(lines):
            even += 1
        lines = balanced
    return "\n".join(lines) or str(text)


def bare_axes(axes) -> None:
    """Remove ticks and grid from image panels (an iterable of matplotlib Axes): pixels need no scale,
    and the book style's grid would draw over them. Keeps axis labels, unlike ``ax.axis("off")``."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)


def image_gallery(images, captions, title: str, ncols: int = 8):
    """A grid of greyscale images, each with a short caption underneath.

    At most ``ncols`` columns, fewer where they would not fit the book's column at a readable caption
    size: the rows are then balanced (ten images in two rows of five, not seven and three).
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("image_gallery needs at least one image")
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    lines = [str(c).split("\n") for c in captions]
    longest = max(len(line) for cap in lines for line in cap)
    col_w = max(0.95, 0.085 * longest + 0.2)  # inches per image: the caption at 10 pt fits under it
    fit = max(1, int(MAX_WIDTH_IN // col_w))
    ncols = min(ncols, len(images), fit)
    nrows = int(np.ceil(len(images) / ncols))
    ncols = int(np.ceil(len(images) / nrows))
    caption_h = 0.2 * max(len(cap) for cap in lines) + 0.1
    width = max(ncols * col_w, min(0.11 * len(title) + 0.4, MAX_WIDTH_IN))
    title_h = 0.25 * wrapped(title, width).count("\n")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, nrows * (col_w + caption_h) + 0.45 + title_h),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(np.squeeze(img), cmap="gray_r", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
        ax.set_title(cap, fontsize=10)
    fig.suptitle(wrapped(title, width))
    fig.tight_layout()
    return fig


def bar_chart(labels, values, title: str, xlabel: str, ylabel: str, reference: float | None = None):
    """Plain bars with hatching and value labels; an optional dashed reference line."""
    import textwrap

    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels but {len(values)} values")
    width = min(max(4, 0.55 * len(values) + 2), MAX_WIDTH_IN)
    per_bar = max(4, int((width - 1.2) / len(values) / 0.085))  # characters of a 10 pt tick label per bar
    names = [textwrap.fill(str(label), per_bar, break_long_words=False) for label in labels]
    longest = max(len(line) for n in names for line in n.split("\n"))
    rotate = longest > per_bar  # a long word (an identifier) does not wrap: slant the labels instead
    lines = 1 if rotate else max(n.count("\n") + 1 for n in names)
    fig, ax = plt.subplots(figsize=(width, 3.2 + 0.17 * (lines - 1) + (0.05 * longest if rotate else 0)))
    bars = ax.bar(names, values, color=OKABE_ITO[5], edgecolor="black", hatch="//")
    ax.bar_label(bars, fmt="%.3f", fontsize=9)
    ax.margins(y=0.12)  # room for the value labels under the title
    if rotate:
        ax.tick_params(axis="x", labelrotation=30)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
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
    ax.legend()
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
    panel = min(3.4, (MAX_WIDTH_IN - 1.0) / len(arrays))  # inches per panel: all fit the column
    fig, axes = plt.subplots(1, len(arrays), figsize=(panel * len(arrays) + 1.0, panel + 1.3), squeeze=False,
                             layout="constrained")
    for n, (ax, (name, a)) in enumerate(zip(axes[0], arrays.items())):
        im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        if annotate:
            for (i, j), v in np.ndenumerate(a):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if v < (vmin + vmax) / 2 else "black")
        ax.set_title(name)
        ax.set_xlabel(xlabels[n])
        if n == 0:  # the panels share their y axis meaning; one label avoids overlaps
            ax.set_ylabel(ylabel)
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(wrapped(title, fig.get_figwidth()))
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
