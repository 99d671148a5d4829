"""Every page of the built book works offline in headless Chromium (tools/browser_check.py)."""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from browser_check import check_book  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parent.parent / "_build" / "screenshots"


@pytest.mark.book
def test_every_page_renders_offline(built_book):
    results = check_book(built_book, SCREENSHOTS)
    assert len(results) >= 5
    failures = {r.page: r.problems for r in results if r.problems}
    assert not failures, failures
    for r in results:
        assert (SCREENSHOTS / (r.page.replace("/", "__").removesuffix(".html") + ".png")).is_file()
    math_pages = {r.page: r.typeset for r in results}
    assert math_pages["book/chapters/mathematics.html"] > 50  # the mathematics chapter is typeset


@pytest.mark.book
def test_checker_fails_on_a_book_that_loads_mathjax_from_a_cdn(built_book, tmp_path):
    copy = tmp_path / "html"
    shutil.copytree(built_book, copy)
    page = copy / "book" / "chapters" / "mathematics.html"
    html = page.read_text()
    local = "../../_static/mathjax/tex-chtml.js"
    assert local in html
    page.write_text(html.replace(local, "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"))
    (result,) = check_book(copy, None, ["book/chapters/mathematics.html"])
    text = " ".join(result.problems)
    assert "requests left 127.0.0.1" in text and "cdn.jsdelivr.net" in text
    assert "raw TeX" in text or "nothing typeset" in text
