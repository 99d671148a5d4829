"""Build hook: the wheel carries a copy of the book files that some chapters read.

Everything else about the package is in pyproject.toml. In a checkout the package reads the files in
place (bigmodel_utils/locations.py); an installed wheel reads this copy with importlib.resources.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BOOK_DATA = ("book/*.md", "book/references.bib", "requirements.lock")  # = locations.BOOK_DATA (tested)


class BuildPyWithBookData(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "bigmodel_utils" / "book_data"
        for pattern in BOOK_DATA:
            for path in sorted(ROOT.glob(pattern)):
                dest = target / path.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildPyWithBookData})
