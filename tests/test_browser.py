"""Every page of the built book works offline in headless Chromium (tools/browser_check.py)."""
import json
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


def test_only_changed_pages_are_checked_again(built_book, tmp_path):
    """`make html` re-checks a page only when it, or a script, style or image, changed since it passed."""
    from browser_check import main, page_digests, pages_to_check

    copy, shots, state = tmp_path / "html", tmp_path / "shots", tmp_path / "state.json"
    shutil.copytree(built_book, copy)
    digests = page_digests(copy)
    page = "book/chapters/mathematics.html"
    for p in digests:
        (shots / p.replace("/", "__")).with_suffix(".png").parent.mkdir(parents=True, exist_ok=True)
        (shots / (p.replace("/", "__").removesuffix(".html") + ".png")).write_bytes(b"png")
    assert pages_to_check(digests, digests, shots) == []
    html = copy / page
    html.write_text(html.read_text().replace("</body>", "<p>a prose edit</p></body>"))
    changed = page_digests(copy)
    assert pages_to_check(changed, digests, shots) == [page]
    css = next((copy / "_static").rglob("*.css"))
    css.write_text(css.read_text() + "\n/* edit */\n")
    assert len(pages_to_check(page_digests(copy), digests, shots)) == len(digests)
    state.write_text(json.dumps(page_digests(copy)))
    html.write_text(html.read_text().replace("a prose edit", "another edit"))
    assert main([str(copy), "--screenshots", str(shots), "--state", str(state)]) == 0  # checks one page
    assert json.loads(state.read_text())[page] == page_digests(copy)[page]


def test_checker_finds_cut_off_content_and_shrunk_figures(tmp_path):
    """The overflow probe: content wider than its box with no scroll bar is reported at each width; the
    same content inside a box that scrolls is not; a figure shown below half its width is reported."""
    import base64
    import struct
    import zlib

    def png(width, height=2):
        raw = b"".join(b"\0" + b"\xff" * 3 * width for _ in range(height))
        chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
        return base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")).decode()

    wide = "x" * 400
    page = '<html><body><main id="main-content"><article style="width:600px">{}</article></main></body></html>'
    (tmp_path / "bad.html").write_text(page.format(
        f'<div style="overflow:hidden;width:300px"><pre style="white-space:pre">{wide}</pre></div>'
        f'<img alt="big" style="width:500px" src="data:image/png;base64,{png(1400)}">'))
    (tmp_path / "good.html").write_text(page.format(
        f'<div style="overflow-x:auto;width:300px"><pre style="white-space:pre">{wide}</pre></div>'
        f'<img alt="ok" style="width:500px" src="data:image/png;base64,{png(800)}">'))
    results = {r.page: r.problems for r in check_book(tmp_path, None, ["bad.html", "good.html"])}
    assert results["good.html"] == [], results["good.html"]
    bad = " ".join(results["bad.html"])
    assert "cut off at 1280 px: pre" in bad and "cut off at 390 px" in bad and "shrunk figure" in bad
