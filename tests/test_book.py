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
