"""Internal links of the built book (pages and #anchors) all resolve (tools/linkcheck.py)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from linkcheck import check  # noqa: E402


@pytest.mark.book
def test_no_broken_internal_links(built_book):
    broken, external = check(built_book)
    assert not broken, broken
    assert any("mybinder.org" in e for e in external)  # launch buttons are listed, not fetched


def test_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#here">ok</a><a href="b.html#gone">x</a><a href="c.html">y</a>'
                                     '<a href="https://example.org">ext</a>')
    (tmp_path / "b.html").write_text('<h1 id="here">B</h1>')
    broken, external = check(tmp_path)
    assert len(broken) == 2 and any("#gone" in b for b in broken) and any("c.html" in b for b in broken)
    assert external == ["https://example.org"]
