"""Accessibility of the built book: headings in order, every figure with alt text and a caption."""
import re
from html.parser import HTMLParser

import pytest


class _Outline(HTMLParser):
    """Heading levels and images inside the page's <article> (the content, not the theme's chrome)."""

    def __init__(self):
        super().__init__()
        self.depth, self.levels, self.images, self.figures = 0, [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article":
            self.depth += 1
        if not self.depth:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))
        elif tag == "img":
            self.images.append(a)
        elif tag == "figcaption":
            self.figures += 1

    def handle_endtag(self, tag):
        if tag == "article":
            self.depth -= 1


def outline(path):
    p = _Outline()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.mark.book
def test_headings_start_at_h1_and_never_skip_a_level(built_book):
    pages = [p for p in built_book.rglob("*.html") if "_static" not in p.parts and p.name not in ("genindex.html", "search.html", "index.html")]
    assert pages
    for page in pages:
        levels = outline(page).levels
        assert levels and levels[0] == 1, (page.name, levels[:5])
        for a, b in zip(levels, levels[1:]):
            assert b <= a + 1, f"{page.relative_to(built_book)}: heading h{a} followed by h{b}"


@pytest.mark.book
def test_every_image_in_a_chapter_has_alt_text_and_a_caption(built_book):
    chapters = sorted((built_book / "book" / "chapters").glob("*.html"))
    assert chapters
    for page in chapters:
        o = outline(page)
        plots = [img for img in o.images if "_images" in img.get("src", "")]
        missing = [img.get("src") for img in plots if not img.get("alt", "").strip()]
        assert not missing, f"{page.name}: images without alt text: {missing}"
        assert o.figures >= len(plots), f"{page.name}: {len(plots)} plots but {o.figures} captions"
