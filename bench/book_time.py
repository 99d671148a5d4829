"""Benchmark 3: execution time of the whole book, per notebook, from the runner's reports.

Reads book/reports/<profile>-cpu.json (written by `make book` / `make smoke`, i.e. by
`python -m bigmodel_utils.run`). Goals on the 2-core CPU machine: full <= 20 min, smoke <= 3 min.
"""
from __future__ import annotations

import json

from common import ROOT, save

GOALS = {"full": 20 * 60, "smoke": 3 * 60}


def main(argv=None) -> dict:
    result, verdicts = {}, []
    for profile, goal in GOALS.items():
        path = ROOT / "book" / "reports" / f"{profile}-cpu.json"
        if not path.exists():
            verdicts.append(f"{profile}: no report yet (run make {'book' if profile == 'full' else 'smoke'})")
            continue
        rep = json.loads(path.read_text())
        per = {n: e["seconds"] for n, e in rep["notebooks"].items() if e.get("status") == "ok"}
        total = sum(per.values())
        result[profile] = {"total_seconds": total, "per_notebook": per, "goal_seconds": goal, "machine": rep["machine"]}
        print(f"{profile}: {len(per)} notebooks, {total:.0f} s in total (goal <= {goal} s)")
        for n, s in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"   {n:28s} {s:7.1f} s  {100 * s / total:5.1f} %")
        verdicts.append(f"{profile}: {total:.0f} s vs goal {goal} s -> {'goal met' if total <= goal else f'over by {total - goal:.0f} s'}")
    for v in verdicts:
        print(v)
    result["verdicts"] = verdicts
    save("book_time", result)
    return result


if __name__ == "__main__":
    main()
