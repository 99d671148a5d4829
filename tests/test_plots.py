import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bigmodel_utils import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def titled(fig):
    return fig._suptitle is not None or any(ax.get_title() for ax in fig.axes)


def test_use_book_style_sets_colour_blind_palette():
    plots.use_book_style()
    colors = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert colors[0] in plots.OKABE_ITO and len(set(colors)) == len(colors)


def test_learning_curves():
    h = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]})
    fig = plots.learning_curves(h)
    assert titled(fig) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    styles = {line.get_linestyle() for line in ax.lines}
    assert len(styles) == 2  # training and validation differ without colour
    with pytest.raises(KeyError, match="no column"):
        plots.learning_curves(h, metrics=("auc",))


def test_confusion_matrix_figure_annotates_every_cell():
    fig = plots.confusion_matrix_figure(np.array([[5, 1], [0, 4]]))
    assert titled(fig) and len(fig.axes[0].texts) == 4
    with pytest.raises(ValueError, match="square"):
        plots.confusion_matrix_figure(np.zeros((2, 3)))


def test_image_gallery():
    fig = plots.image_gallery(np.zeros((3, 28, 28), np.uint8), ["a", "b", "c"], "t", ncols=2)
    assert fig._suptitle.get_text() == "t"
    with pytest.raises(ValueError, match="captions"):
        plots.image_gallery(np.zeros((3, 28, 28)), ["a"], "t")
    with pytest.raises(ValueError, match="at least one"):
        plots.image_gallery(np.zeros((0, 28, 28)), [], "t")


def test_bar_chart():
    fig = plots.bar_chart([0, 1], [0.5, 0.9], "title", "x", "y", reference=0.7)
    ax = fig.axes[0]
    assert ax.get_title() == "title" and ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    assert ax.patches[0].get_hatch() == "//"
    with pytest.raises(ValueError, match="labels"):
        plots.bar_chart([0], [1, 2], "t", "x", "y")


def test_line_chart():
    fig = plots.line_chart([1, 2, 3], {"a": [1, 2, 3], "b": [3, 2, 1]}, "title", "x", "y", logy=True,
                           reference=(1.5, "ref"))
    ax = fig.axes[0]
    assert ax.get_title() == "title" and ax.get_yscale() == "log" and len(ax.get_lines()) == 3
    assert ax.get_lines()[0].get_linestyle() != ax.get_lines()[1].get_linestyle()
    with pytest.raises(ValueError, match="at least one"):
        plots.line_chart([1], {}, "t", "x", "y")
    with pytest.raises(ValueError, match="values"):
        plots.line_chart([1, 2], {"a": [1]}, "t", "x", "y")


def test_heatmap_panels():
    fig = plots.heatmap_panels({"a": np.eye(3), "b": np.ones((3, 3))}, "title", "key", "query", annotate=True)
    assert fig._suptitle.get_text() == "title" and len(fig.axes) == 3  # two panels and the colour bar
    assert fig.axes[0].get_title() == "a" and fig.axes[1].get_xlabel() == "key"
    assert fig.axes[0].get_ylabel() == "query" and fig.axes[1].get_ylabel() == ""
    with pytest.raises(ValueError, match="at least one"):
        plots.heatmap_panels({}, "t", "x", "y")
    with pytest.raises(ValueError, match="two-dimensional"):
        plots.heatmap_panels({"a": np.ones(3)}, "t", "x", "y")
    fig = plots.heatmap_panels({"a": np.eye(2), "b": np.eye(2)}, "t", ["x1", "x2"], "y")
    assert [ax.get_xlabel() for ax in fig.axes[:2]] == ["x1", "x2"]
    with pytest.raises(ValueError, match="x labels"):
        plots.heatmap_panels({"a": np.eye(2)}, "t", ["x1", "x2"], "y")


def test_bare_axes_removes_ticks_and_grid():
    import matplotlib.pyplot as plt

    from bigmodel_utils.plots import bare_axes

    fig, axes = plt.subplots(1, 2)
    axes[0].grid(True)
    bare_axes(axes)
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in axes)
    assert not any(line.get_visible() for line in axes[0].get_xgridlines())
    plt.close(fig)


def test_interval_chart():
    fig = plots.interval_chart(["a", "b", "c"], [0.5, 0.2, 0.8], [0.4, 0.1, 0.7], [0.6, 0.3, 0.9], "title", "accuracy",
                               groups=["LLM", "LLM", "baseline"], reference=(1 / 6, "chance"))
    ax = fig.axes[0]
    assert ax.get_title() == "title" and ax.get_xlabel() == "accuracy"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"LLM", "baseline", "chance"}
    with pytest.raises(ValueError, match="one estimate"):
        plots.interval_chart(["a"], [0.5, 0.6], [0.4], [0.6], "t", "x")
    with pytest.raises(ValueError, match="contain"):
        plots.interval_chart(["a"], [0.5], [0.6], [0.7], "t", "x")
    with pytest.raises(ValueError, match="groups"):
        plots.interval_chart(["a"], [0.5], [0.4], [0.6], "t", "x", groups=["g", "h"])


def test_readability_problems_passes_a_readable_figure():
    plots.use_book_style()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([1, 2, 3], label="series")
    ax.set(title="A readable figure", xlabel="x", ylabel="y")
    ax.legend()
    fig.tight_layout()
    assert plots.readability_problems(fig) == []


def test_readability_problems_finds_small_text_on_a_wide_figure():
    plots.use_book_style()
    fig, axes = plt.subplots(1, 8, figsize=(16, 2))
    for k, ax in enumerate(axes):
        ax.set_title(f"panel {k}", fontsize=8)
    problems = plots.readability_problems(fig)
    assert any("1600 px wide" in p for p in problems)  # more than twice the column
    small = next(p for p in problems if "'panel 0'" in p)
    assert "3.9 pt on the page" in small and "font size 8" in small
    # the same 8 pt title on a figure that fits the column is only too small, not scaled
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("small", fontsize=8)
    assert plots.readability_problems(fig) == ["text 'small' is 8.0 pt on the page (font size 8; at least 9 pt)"]
    assert plots.readability_problems(fig, min_points=8) == []


def test_readability_problems_finds_overlapping_tick_labels_and_panel_titles():
    plots.use_book_style()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["Pullover (long)", "Ankle boot (long)", "Trouser (long)"], [1, 2, 3])
    problems = plots.readability_problems(fig)
    assert len(problems) == 1 and "x tick labels 'Pullover (long)' and 'Ankle boot (long)'" in problems[0]
    ax.tick_params(axis="x", labelrotation=90)
    assert plots.readability_problems(fig) == []
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    for ax in axes:
        ax.set_title("a title much longer than its panel")
    assert any("overlaps" in p and "panel 2" in p for p in plots.readability_problems(fig))


def test_hidden_text_is_not_checked():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("invisible", fontsize=4, visible=False)
    ax.axis("off")  # tick labels of a hidden axis are not drawn
    ax.tick_params(labelsize=4)
    assert plots.readability_problems(fig) == []


class _FakeEvents:
    def __init__(self, *callbacks):
        self.callbacks = {"post_execute": list(callbacks)}


class _FakeShell:
    def __init__(self, *callbacks):
        self.events = _FakeEvents(*callbacks)


def test_flush_wrapper_reports_unreadable_figures_then_flushes(tmp_path, monkeypatch):
    flushed = []

    def flush_figures():
        flushed.append(len(plt.get_fignums()))
        plt.close("all")

    flush_figures.__module__ = "matplotlib_inline.backend_inline"
    other = lambda: None  # noqa: E731 - another post_execute callback stays as it is
    shell = _FakeShell(other, flush_figures)
    monkeypatch.setattr(plt, "show", plt.show)  # install_figure_check wraps plt.show too; undo it afterwards
    assert plots.install_figure_check(shell) and plots.install_figure_check(shell)  # twice wraps once
    wrapper = shell.events.callbacks["post_execute"][1]
    assert shell.events.callbacks["post_execute"][0] is other and wrapper.__wrapped__ is flush_figures
    assert plt.show.__wrapped__.__name__ == "show" and not hasattr(plt.show.__wrapped__, "__wrapped__")

    report = tmp_path / "figures.json"
    monkeypatch.setenv(plots.FIGURE_REPORT_ENV, str(report))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("fine")
    wrapper()
    assert flushed == [1] and not report.exists()  # a readable figure leaves no line
    fig, axes = plt.subplots(1, 8, figsize=(16, 2))
    fig.suptitle("Gallery")
    wrapper()
    assert flushed == [1, 1]
    (line,) = report.read_text().splitlines()
    rec = json.loads(line)
    assert rec["title"] == "Gallery" and "1600 px wide" in rec["problems"][0]


def test_flush_wrapper_still_flushes_when_the_check_fails(monkeypatch):
    flushed = []

    def flush_figures():
        flushed.append(True)

    flush_figures.__module__ = "matplotlib_inline.backend_inline"
    shell = _FakeShell(flush_figures)
    monkeypatch.setattr(plt, "show", plt.show)
    plots.install_figure_check(shell)
    monkeypatch.setattr(plots, "report_open_figures", lambda: 1 / 0)
    shell.events.callbacks["post_execute"][0]()
    assert flushed == [True]


def test_use_book_style_outside_ipython_installs_nothing(monkeypatch):
    monkeypatch.setattr(plt, "show", plt.show)
    original = plt.show
    plots.use_book_style()
    plots.use_book_style()
    assert plt.show is original and matplotlib.rcParams["axes.titlesize"] == 12
