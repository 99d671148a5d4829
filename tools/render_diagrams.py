"""Render the book's diagrams (book/images/diagrams/*.dot) to SVG files beside them in book/images/.

SVG files, not Sphinx's graphviz directive, so that a diagram shows in JupyterLab as well as in the
book. Each SVG records the SHA-256 of its source; tests/test_learner_path.py checks that it is current.
Run after editing a .dot file: .venv/bin/python tools/render_diagrams.py
"""
import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "book" / "images" / "diagrams"


def stamp(dot: Path) -> str:
    return f"<!-- rendered from diagrams/{dot.name}, sha256 {hashlib.sha256(dot.read_bytes()).hexdigest()} -->"


def main() -> None:
    for dot in sorted(SOURCES.glob("*.dot")):
        svg = subprocess.run(["dot", "-Tsvg", str(dot)], capture_output=True, text=True, check=True).stdout
        head, _, rest = svg.partition("<svg")
        (ROOT / "book" / "images" / f"{dot.stem}.svg").write_text(head + stamp(dot) + "\n<svg" + rest)
        print(f"rendered {dot.name}")


if __name__ == "__main__":
    main()
