"""Check every internal link of the built HTML book; list external links without fetching them.

Usage: python tools/linkcheck.py [HTML_DIR]

Internal links (relative URLs, with or without #anchor) must point to an existing file and,
for an anchor, to an element with that id (or name) in the target page. Exit status 1 on any
broken link.
"""
from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

ROOT = Path(__file__).resolve().parent.parent


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.links.append(a["href"])


def parse(path: Path) -> _Collector:
    c = _Collector()
    c.feed(path.read_text(encoding="utf-8", errors="replace"))
    return c


def check(html_dir: Path) -> tuple[list[str], list[str]]:
    """Return (broken internal links, external links) of all pages under ``html_dir``."""
    html_dir = Path(html_dir)
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {html_dir}; build the book first")
    parsed = {p.resolve(): parse(p) for p in pages}
    broken, external = [], set()
    for page, c in parsed.items():
        for link in c.links:
            u = urlparse(link)
            if u.scheme in ("http", "https", "mailto", "ftp") or link.startswith("//"):
                external.add(link)
                continue
            if u.scheme in ("data", "javascript", "blob"):
                continue
            target, anchor = urldefrag(link)
            path = (page.parent / unquote(urlparse(target).path)).resolve() if target else page
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(html_dir.resolve())}: {link} (no such file)")
            elif anchor and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else parse(path).ids
                if anchor not in ids:
                    broken.append(f"{page.relative_to(html_dir.resolve())}: {link} (no anchor #{anchor})")
    return broken, sorted(external)


def main(argv=None) -> int:
    html_dir = Path((argv or sys.argv[1:] or [str(ROOT / "_build" / "html")])[0])
    broken, external = check(html_dir)
    print(f"{len(external)} external links (not fetched):")
    for e in external:
        print("   ", e)
    print(f"{len(broken)} broken internal links")
    for b in broken:
        print("   ", b)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
