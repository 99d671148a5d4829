"""Small Sphinx fixes the offline book needs (loaded from _config.yml, sphinx.local_extensions).

* sphinx-thebe 0.3.1 adds its inline configuration script twice under Sphinx 7, which makes
  every page log "Identifier 'THEBE_JS_URL' has already been declared"; keep the first copy.
* The book theme starts without a colour mode, and its script logs "Got invalid theme mode"
  on every page; start in light mode (readers can still switch).
* A chapter that cannot run in a free Binder session (``CHAPTER_NEEDS`` of
  ``bigmodel_utils.notebook_copies``) gets no Binder button.
"""
from bigmodel_utils.notebook_copies import CHAPTER_NEEDS


def _drop_binder_button(pagename, context):
    name = pagename.rsplit("/", 1)[-1]
    if not pagename.startswith("book/chapters/") or not CHAPTER_NEEDS.get(name, {}).get("binder"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") != "Binder"]
    context["header_buttons"] = [g for g in context.get("header_buttons", [])
                                 if g.get("label") != "launch-buttons" or g["buttons"]]


def _page_fixes(app, pagename, templatename, context, doctree):
    _drop_binder_button(pagename, context)
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
