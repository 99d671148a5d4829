"""Write each chapter's install cell (bigmodel_utils.notebook_copies.install_cell_source) and the tags
that say how the book's pages show each cell (notebook_copies.page_tags) into both copies of the chapter.
Run after changing CHAPTER_NEEDS, the package version or the tagging rules; neither changes what the
cells compute, so no re-execution is needed. tests/test_learner_path.py checks both."""
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bigmodel_utils import run  # noqa: E402
from bigmodel_utils.notebook_copies import apply_page_tags, ensure_install_cell  # noqa: E402


def main() -> None:
    changed = 0
    for name in run.book_order():
        for folder in (run.NOTEBOOKS, run.CHAPTERS):
            path = folder / f"{name}.ipynb"
            nb = nbformat.read(path, 4)
            before = nbformat.writes(nb)
            ensure_install_cell(nb, name)
            apply_page_tags(nb)
            if nbformat.writes(nb) != before:
                nbformat.write(nb, path)
                changed += 1
    print(f"install cells and page tags: {changed} notebook(s) updated")


if __name__ == "__main__":
    main()
