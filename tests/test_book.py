"""The book builds strictly (-W) from the committed, executed notebooks, and works offline."""
import re
import pytest


@pytest.fixture(scope="module")
def built(built_book):
    return built_book


@pytest.mark.book
def test_every_toc_page_is_built(built):
    for page in ["book/intro", "book/chapters/mnist_cnn", "book/errata", "book/execution_report", "book/credits", "book/bibliography"]:
        assert (built / f"{page}.html").is_file(), page


@pytest.mark.book
def test_math_is_bundled_not_from_a_cdn(built):
    html = (built / "book/chapters/mnist_cnn.html").read_text()
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)
    mathjax = [s for s in scripts if "mathjax" in s.lower() or "tex-" in s.lower()]
    assert mathjax and all(not s.startswith(("http:", "https:", "//")) for s in mathjax), mathjax
    for s in mathjax:
        assert (built / "book/chapters" / s.split("?")[0]).resolve().is_file(), s
    assert not any(s.startswith(("http:", "https:", "//")) for s in scripts), scripts


@pytest.mark.book
def test_chapter_shows_full_profile_results(built):
    html = (built / "book/chapters/mnist_cnn.html").read_text()
    acc = float(re.search(r"test accuracy: (0\.\d+)", html).group(1))
    assert acc >= 0.99
    assert "Profile &#39;full&#39;" in html or "Profile 'full'" in html
    assert 'alt="' in html


@pytest.mark.book
def test_execution_report_lists_every_chapter(built, root):
    from bigmodel_utils.run import book_order

    text = (root / "book" / "execution_report.md").read_text()
    for name in book_order():
        assert re.search(rf"\| {name} \| [\d.]+ \| cpu", text), name


@pytest.mark.book
def test_lifecycle_diagram_is_an_inline_graphviz_image(built):
    """The concepts chapter's lifecycle diagrams are Graphviz drawings rendered to SVG files
    (tools/render_diagrams.py), no JavaScript renderer such as Mermaid that fails offline from file://."""
    html = (built / "book/chapters/concepts.html").read_text()
    assert 'class="mermaid"' not in html and "mermaid.min.js" not in html
    images = re.findall(r'<img[^>]+src="([^"]*concepts_lifecycle_[a-z]+\.svg)"', html)
    assert len(images) >= 2, images
    for src in images:
        assert (built / "book/chapters" / src).resolve().is_file(), src


@pytest.mark.book
def test_glossary_and_faq_link_to_the_chapters(built):
    for page in ["book/glossary", "book/faq"]:
        html = (built / f"{page}.html").read_text()
        links = set(re.findall(r'href="(chapters/[a-z_]+)\.html', html))
        assert len(links) >= 8, (page, links)


@pytest.mark.book
def test_chapter_pages_keep_the_machinery_out_of_the_way(built):
    """One parameters cell, folded; no install cell, glue cell or JupyterLab-only table on the page;
    every # Check cell folded to a one-line label saying what it checked; exercises and reading."""
    from bigmodel_utils.run import book_order

    for name in book_order():
        html = (built / f"book/chapters/{name}.html").read_text()
        assert "Setup outside the book" not in html and "# Parameters" not in html, name
        assert "summary_numbers(" not in html and "For the comparison table" not in html, name
        checks, labels = html.count('class="cell tag_check'), html.count(">Checked: ")
        assert checks == labels and "Show code cell source</p>\n<p class=\"expanded admonition-title\">Hide the check" not in html
        assert 'id="exercises"' in html and 'id="further-reading"' in html, name
        assert html.count("tag_parameters") == 1 and "tag_hide-cell" in html, name


@pytest.mark.book
def test_sidebar_numbers_chapters_and_keeps_maintainer_pages_apart(built):
    html = (built / "book/intro.html").read_text()
    assert re.search(r'href="chapters/concepts.html">1\. ', html)
    nav = html[html.index("For maintainers"):]
    assert "chapters/performance.html" in nav and "execution_report.html" in nav
    assert not (built / "genindex.html").exists(), "no empty index page"
