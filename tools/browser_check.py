"""Open every page of the built book in headless Chromium and check it works offline.

Usage: python tools/browser_check.py [HTML_DIR] [--screenshots DIR]

The book is served on 127.0.0.1 and every page is loaded in Debian's Chromium (driven by
Playwright, without downloading a browser). For each page it checks that MathJax typeset
all math (no raw TeX left outside code), every image and diagram loaded, the console shows
no errors, no request left 127.0.0.1, nothing is cut off at the right edge at 1280 px and at
390 px (a phone), and no figure is shown at less than half its natural width; it saves a
full-page screenshot at both widths. Exit status 1
when any page fails. `make book` runs it on _build/html; tests/test_browser.py runs it on
a fresh build.
"""
from __future__ import annotations

import argparse
import functools
import json
import http.server
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Visible text outside code blocks, and the number of typeset / untypeset math elements.
PAGE_PROBE = """() => {
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, script, style, mjx-container, .MathJax').forEach(e => e.remove());
  const imgs = [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0, alt: i.alt}));
  return {text: clone.innerText, typeset: document.querySelectorAll('mjx-container').length,
          mathSpans: document.querySelectorAll('.math').length, images: imgs};
}"""
RAW_TEX = ("\\(", "\\[", "$$", "\\begin{", "\\frac", "\\sum")

#: Page widths at which nothing may be cut off: a desktop browser and a phone.
WIDTHS = (1280, 390)
# Elements of the article wider than the box that shows them, with no visible scroll bar: content that a
# reader cannot see. An element inside a box that scrolls horizontally (overflow-x auto or scroll) is fine.
OVERFLOW_PROBE = """() => {
  const art = document.querySelector('main #main-content article') || document.querySelector('article') || document.body;
  const right = art.getBoundingClientRect().right;
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  const bad = [];
  for (const el of art.querySelectorAll('pre, table, div.highlight, div.cell_output, .output, img, svg, mjx-container, figure, p, li, dl')) {
    if (!el.getClientRects().length) continue;  // not shown (a folded cell)
    let a = el.parentElement, scroller = null;
    while (a && a !== document.body) { if (scrolls(a)) { scroller = a; break; } a = a.parentElement; }
    const cs = getComputedStyle(el), inline = cs.display.startsWith('inline'), r = el.getBoundingClientRect();
    const wider = el.scrollWidth > el.clientWidth + 2;
    // clipped by its own box (overflow hidden or clip): cut off even inside a scrolling ancestor
    const own = !inline && wider && ['hidden', 'clip'].includes(cs.overflowX);
    // reaching past the article's right edge, with nothing that scrolls in between
    const reach = inline ? r.right : r.left + Math.max(el.scrollWidth, r.width);
    const past = !scroller && !scrolls(el) && reach > right + 2;
    const spill = false;
    if (own || past || spill) {
      const text = (el.innerText || el.getAttribute('alt') || el.tagName).trim().slice(0, 60).replace(/\s+/g, ' ');
      bad.push(`${el.tagName.toLowerCase()} ${Math.round(el.scrollWidth)}>${Math.round(el.clientWidth)} px: ${text}`);
    }
  }
  // a box that scrolls sideways shows its scroll bar at its bottom edge: on a box taller than 400 px
  // that bar is out of sight while the reader looks at the cut-off top, so it does not count as visible
  for (const el of art.querySelectorAll('*')) {
    if (!el.getClientRects().length || !scrolls(el) || el.scrollWidth <= el.clientWidth + 2) continue;
    if (el.clientHeight > 400) {
      const text = (el.innerText || el.tagName).trim().slice(0, 60).replace(/\s+/g, ' ');
      bad.push(`${el.tagName.toLowerCase()} ${Math.round(el.scrollWidth)}>${Math.round(el.clientWidth)} px, its scroll bar ${Math.round(el.clientHeight)} px below its top: ${text}`);
    }
  }
  return bad;
}"""
# Figures shown at less than half their natural width are too small to read (measured at the desktop width).
SHRUNK_PROBE = """() => [...document.querySelectorAll('article img')].filter(i => i.naturalWidth > 0 && i.getClientRects().length
  && i.clientWidth < i.naturalWidth / 2).map(i => `${i.currentSrc.split('/').pop()} shown at ${i.clientWidth} of ${i.naturalWidth} px`)"""


@dataclass
class PageResult:
    page: str
    problems: list = field(default_factory=list)
    external_requests: list = field(default_factory=list)
    typeset: int = 0
    images: int = 0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        # Chromium asks every origin for /favicon.ico; the redirect page index.html declares no icon,
        # so without this the browser logs a 404 that says nothing about the book.
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 on a free port; returns (server, base URL)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def check_book(html_dir: Path, screenshots: Path | None = None, pages: list[str] | None = None) -> list[PageResult]:
    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    pages = pages or sorted(str(p.relative_to(html_dir)) for p in html_dir.rglob("*.html") if "_static" not in p.parts)
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {html_dir}; build the book first (make html)")
    server, base = serve(html_dir)
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for rel in pages:
                res = PageResult(rel)
                page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
                page.on("request", lambda r, res=res: (urlparse(r.url).hostname not in ("127.0.0.1", None)
                                                        and r.url.split(":")[0] in ("http", "https", "ws", "wss")
                                                        and res.external_requests.append(r.url)))
                page.on("console", lambda m, res=res: m.type == "error" and res.problems.append(f"console error: {m.text}"))
                page.on("pageerror", lambda e, res=res: res.problems.append(f"page error: {e}"))
                page.on("response", lambda r, res=res: r.status >= 400 and res.problems.append(f"HTTP {r.status}: {r.url}"))
                page.goto(f"{base}/{rel}", wait_until="load")
                for attempt in range(3):  # a page may redirect (index.html does); probe the page it lands on
                    try:
                        page.wait_for_load_state("networkidle")
                        page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")
                        probe = page.evaluate(PAGE_PROBE)
                        break
                    except Exception as err:  # noqa: BLE001 - playwright raises a generic Error on navigation
                        if "context was destroyed" not in str(err) or attempt == 2:
                            raise
                        page.wait_for_timeout(500)
                res.typeset, res.images = probe["typeset"], len(probe["images"])
                raw = [t for t in RAW_TEX if t in probe["text"]]
                if raw:
                    res.problems.append(f"raw TeX left untypeset: {raw}")
                if probe["mathSpans"] and not probe["typeset"]:
                    res.problems.append(f"{probe['mathSpans']} math elements but nothing typeset (MathJax missing?)")
                for img in probe["images"]:
                    if not img["ok"]:
                        res.problems.append(f"image did not load: {img['src']}")
                if res.external_requests:
                    res.problems.append(f"requests left 127.0.0.1: {sorted(set(res.external_requests))[:5]}")
                res.problems += [f"shrunk figure: {s}" for s in page.evaluate(SHRUNK_PROBE)]
                for width in WIDTHS:
                    page.set_viewport_size({"width": width, "height": 900})
                    page.evaluate("() => document.fonts.ready.then(() => null)")  # widths settle once fonts load
                    page.wait_for_timeout(300)
                    res.problems += [f"cut off at {width} px: {b}" for b in page.evaluate(OVERFLOW_PROBE)]
                    if screenshots:
                        out = screenshot_path(screenshots, rel, width)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(out), full_page=True)
                page.close()
                results.append(res)
            browser.close()
    finally:
        server.shutdown()
    return results


def page_digests(html_dir: Path) -> dict[str, str]:
    """SHA-256 of every page, each combined with one digest of all the files that are not pages (scripts,
    styles, images): a page needs checking again when it or anything it may load has changed."""
    import hashlib

    html_dir = Path(html_dir)
    files = sorted(p for p in html_dir.rglob("*") if p.is_file())
    shared = hashlib.sha256()
    for p in files:
        if p.parts[len(html_dir.parts)] in ("_static", "_images"):  # what pages load (not sources or the index)
            shared.update(str(p.relative_to(html_dir)).encode() + b"\0" + p.read_bytes())
    common = shared.hexdigest()
    return {str(p.relative_to(html_dir)): hashlib.sha256(common.encode() + p.read_bytes()).hexdigest()
            for p in files if p.suffix == ".html" and "_static" not in p.parts}


def screenshot_path(screenshots: Path, page: str, width: int = WIDTHS[0]) -> Path:
    """The desktop screenshot keeps the page's name; the phone one adds its width."""
    suffix = "" if width == WIDTHS[0] else f"@{width}"
    return Path(screenshots) / (page.replace("/", "__").removesuffix(".html") + suffix + ".png")


def pages_to_check(digests: dict[str, str], passed: dict[str, str], screenshots: Path) -> list[str]:
    """Pages that changed since they last passed, or whose screenshot is missing."""
    return sorted(p for p, d in digests.items() if passed.get(p) != d or not screenshot_path(screenshots, p).is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"))
    ap.add_argument("--state", help="JSON file of the pages that passed last time: only pages that changed since "
                                    "(or whose scripts, styles or images changed) are checked again")
    args = ap.parse_args(argv)
    digests = page_digests(Path(args.html_dir))
    state_path = Path(args.state) if args.state else None
    passed = {}
    if state_path and state_path.is_file():
        try:
            passed = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError):
            passed = {}  # an unreadable state only means every page is checked
    todo = pages_to_check(digests, passed, Path(args.screenshots))
    results = check_book(Path(args.html_dir), Path(args.screenshots), todo) if todo else []
    bad = [r for r in results if r.problems]
    for r in results:
        status = "ok" if not r.problems else "FAIL"
        print(f"{status:4s} {r.page}: {r.typeset} formulas typeset, {r.images} images" + "".join(f"\n     - {p}" for p in r.problems))
    skipped = len(digests) - len(todo)
    print(f"{len(results)} pages checked in Chromium, {len(bad)} with problems; screenshots in {args.screenshots}"
          + (f"; {skipped} unchanged pages passed before (state {state_path})" if skipped else ""))
    if state_path:
        ok = {r.page for r in results if not r.problems}
        keep = {p: d for p, d in digests.items() if p in ok or (p not in todo and passed.get(p) == d)}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(keep, indent=1, sort_keys=True) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
