"""Small Sphinx fixes the offline book needs (loaded from _config.yml, sphinx.local_extensions).

* sphinx-thebe 0.3.1 adds its inline configuration script twice under Sphinx 7, which makes
  every page log "Identifier 'THEBE_JS_URL' has already been declared"; keep the first copy.
* The book theme starts without a colour mode, and its script logs "Got invalid theme mode"
  on every page; start in light mode (readers can still switch).
* A folded ``# Check`` cell (tag ``check``) shows what it checked as its one-line label (the
  comment it starts with) instead of "Show code cell source"; the assertions open on a click.
* Every cell of a prose table carries its column's header as ``data-label``, so that on a phone,
  where the stylesheet shows one block per row, each value keeps its label.
* A chapter that cannot run in a free Binder session (``CHAPTER_NEEDS`` of
  ``bigmodel_utils.notebook_copies``) gets no Binder button.
"""
import html
import re

from bigmodel_utils.notebook_copies import CHAPTER_NEEDS

_CHECK_CELL = re.compile(
    r'(<div class="cell tag_check[^"]*">\s*<details class="[^"]*">\s*<summary[^>]*>\s*'
    r'<p class="collapsed admonition-title">)Show code cell source(</p>\s*'
    r'<p class="expanded admonition-title">)Hide code cell source(</p>\s*</summary>\s*'
    r'<div class="cell_input[^>]*>\s*<div class="highlight[^>]*><div class="highlight"><pre><span></span>)'
    r'((?:<span class="c1">[^<]*</span>\n?)+)')


def _check_label(comments: str) -> str:
    """The cell's leading comment lines as one sentence: "# Check: a, b" -> "Checked: a, b"."""
    lines = [html.unescape(t).lstrip("#").strip() for t in re.findall(r'<span class="c1">([^<]*)</span>', comments)]
    text = " ".join(lines)
    text = re.sub(r"^Check(s)?\b:?\s*", "", text)
    return "Checked: " + (text or "the claims above")


def _label_checks(context) -> None:
    body = context.get("body")
    if body and "tag_check" in body:
        context["body"] = _CHECK_CELL.sub(
            lambda m: m.group(1) + html.escape(_check_label(m.group(4))) + m.group(2) + "Hide the check"
            + m.group(3) + m.group(4), body)


def _drop_binder_button(pagename, context):
    name = pagename.rsplit("/", 1)[-1]
    if not pagename.startswith("book/chapters/") or not CHAPTER_NEEDS.get(name, {}).get("binder"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") != "Binder"]
    context["header_buttons"] = [g for g in context.get("header_buttons", [])
                                 if g.get("label") != "launch-buttons" or g["buttons"]]


_TABLE = re.compile(r'<table class="table">.*?</table>', re.S)


def _label_cells(table: str) -> str:
    """Add data-label="<header>" to the td cells of one table (by column position)."""
    head = re.search(r"<thead>(.*?)</thead>", table, re.S)
    if not head:
        return table
    labels = [html.escape(re.sub(r"<[^>]+>", "", h).strip(), quote=True)
              for h in re.findall(r"<th[^>]*>(.*?)</th>", head.group(1), re.S)]

    def row(m):
        cells = iter(labels)
        return re.sub(r"<td(?![^>]*data-label)", lambda _: f'<td data-label="{next(cells, "")}"', m.group(0))

    return table[:head.end()] + re.sub(r"<tr[^>]*>.*?</tr>", row, table[head.end():], flags=re.S)


def _label_tables(context) -> None:
    body = context.get("body")
    if body and '<table class="table">' in body:
        context["body"] = _TABLE.sub(lambda m: _label_cells(m.group(0)), body)


def _page_fixes(app, pagename, templatename, context, doctree):
    _drop_binder_button(pagename, context)
    _label_checks(context)
    _label_tables(context)
    context["default_mode"] = context.get("default_mode") or "light"
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attrs = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "", attrs.get("body", ""))  # ignore priority
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _page_fixes, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
