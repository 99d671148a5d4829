"""Benchmark 4: building the HTML book from the executed notebooks (no execution), goal <= 60 s."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, save

GOAL = 60.0


def main(argv=None) -> dict:
    jb = Path(sys.executable).parent / "jupyter-book"
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([str(jb), "build", "--all", "--path-output", out, "."], cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    ok = proc.returncode == 0
    verdict = f"book build: {seconds:.1f} s ({'ok' if ok else 'FAILED'}), {seconds / GOAL:.2f} of the {GOAL:.0f} s budget -> " + (
        "goal met" if ok and seconds <= GOAL else "goal missed")
    print(verdict)
    save("book_build", {"seconds": seconds, "ok": ok, "goal_seconds": GOAL, "verdicts": [verdict]})
    return {"seconds": seconds, "ok": ok}


if __name__ == "__main__":
    main()
