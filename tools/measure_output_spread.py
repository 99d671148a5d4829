"""Measure how far each cell's outputs move between machines and thread counts; write the tolerances.

Usage (after executing the smoke profile into several folders, e.g. with 1 and 2 threads, on
whatever CPUs are at hand, and with another seed)::

    python tools/measure_output_spread.py --runs /tmp/runs/intel-t1 /tmp/runs/intel-t2 \
        --seed-runs /tmp/runs/intel-t2-seed1 [--factor 4] [--out tests/output_tolerances.yml]

Every executed copy is compared with the committed ``notebooks/`` under the default rule of
:mod:`bigmodel_utils.output_check`. A cell whose numbers differ gets ``atol`` (for values below 1)
and ``rtol`` (for values of 1 and above) equal to ``factor`` times the largest deviation measured;
a cell whose text differs, or whose numbers spread so far that a tolerance could not fail
(above 0.5), gets ``checks_only``. Runs with another seed do not set tolerances: a new seed changes the
data subsets and the whole trajectory, usually far more than a new CPU does (compare the two spreads
in the file). Their spread is written beside each tolerance for comparison, the worst case a
fully diverged run could reach.
The measured spreads are written beside each tolerance, so every number in the file is justified.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bigmodel_utils import output_check as oc  # noqa: E402
from bigmodel_utils.run import book_order  # noqa: E402


MAX_TOLERANCE = 0.5  # beyond this a tolerance could not fail; such cells are left to the # Check cells


def round_up(x: float) -> float:
    """Round up to two significant digits (a tolerance never rounds below what was measured)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - 1
    return math.ceil(x / 10**e - 1e-9) * 10**e


def spread(devs: list[tuple[float, float]]) -> tuple[float, float]:
    """Largest absolute deviation among values below 1, largest relative one among values of 1 and above."""
    small = [abs(a - b) for a, b in devs if abs(a) < 1]
    large = [abs(a - b) / abs(a) for a, b in devs if abs(a) >= 1]
    return max(small, default=0.0), max(large, default=0.0)


def measure(runs: list[Path], seed_runs: list[Path], factor: float) -> dict:
    sanitizers = oc.load_sanitizers()
    chapters = {}
    for name in book_order():
        ref = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", 4)
        cells: dict[str, dict] = {}
        for run in runs:
            path = run / f"{name}.ipynb"
            if not path.is_file():
                continue
            for m in oc.compare_notebooks(ref, nbformat.read(path, 4), {}, sanitizers):
                entry = cells.setdefault(m.cell_id, {"cell": m.source.strip().splitlines()[0][:70],
                                                     "devs": [], "seed_devs": [], "runs": set(),
                                                     "structural": None})
                entry["runs"].add(run.name)
                if m.structural:
                    entry["structural"] = m.reason[:200]
                entry["devs"] += m.deviations
        for run in seed_runs:
            path = run / f"{name}.ipynb"
            if not path.is_file():
                continue
            new = {c.cell_id: c for c in oc.comparable_cells(nbformat.read(path, 4), sanitizers)}
            for c in oc.comparable_cells(ref, sanitizers):
                entry = cells.get(c.cell_id)
                if entry is None or entry["structural"] or c.cell_id not in new:
                    continue
                m = oc.compare_cell(c, new[c.cell_id], oc.Tolerance(atol=1e300))
                # a seed run counts only where its text has the same shape (numbers in the same places)
                if m is None:
                    devs = []
                    for (_, a), (_, b) in zip(c.texts, new[c.cell_id].texts):
                        ta, na = oc.split_numbers(a)
                        tb, nb_ = oc.split_numbers(b)
                        if ta == tb:
                            devs += [(float(x), float(y)) for x, y in zip(na, nb_) if x != y]
                    entry["seed_devs"] += devs
        out = {}
        for cell_id, e in cells.items():
            if e["structural"]:
                out[cell_id] = {"cell": e["cell"], "checks_only": True, "why": e["structural"],
                                "runs": sorted(e["runs"])}
                continue
            small, large = spread(e["devs"])
            if max(factor * small, factor * large) > MAX_TOLERANCE:
                out[cell_id] = {"cell": e["cell"], "checks_only": True,
                                "why": f"numbers spread too far for a meaningful tolerance (largest absolute deviation "
                                       f"below 1: {small:.3g}, relative from 1: {large:.3g})",
                                "runs": sorted(e["runs"])}
                continue
            out[cell_id] = {"cell": e["cell"], "atol": round_up(factor * small), "rtol": round_up(factor * large),
                            "measured": {"max_abs_below_1": float(f"{small:.3g}"), "max_rel_from_1": float(f"{large:.3g}"),
                                         "numbers_that_moved": len(e["devs"])},
                            **({"for_comparison_another_seed": dict(zip(
                                ("max_abs_below_1", "max_rel_from_1"), (float(f"{v:.3g}") for v in spread(e["seed_devs"]))))}
                               if e["seed_devs"] else {}),
                            "runs": sorted(e["runs"])}
        if out:
            chapters[name] = out
    return chapters


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="folders of executed smoke copies")
    parser.add_argument("--seed-runs", type=Path, nargs="*", default=[], help="folders executed with another seed")
    parser.add_argument("--factor", type=float, default=4.0, help="tolerance = factor x measured spread")
    parser.add_argument("--out", type=Path, default=oc.TOLERANCE_FILE)
    parser.add_argument("--note", default="", help="where the runs came from (CPU models, thread counts)")
    args = parser.parse_args(argv)
    chapters = measure(args.runs, args.seed_runs, args.factor)
    header = (
        "# Tolerances for comparing fresh smoke executions with the committed outputs of notebooks/,\n"
        "# per chapter and cell id (see bigmodel_utils/output_check.py). Written by\n"
        "# tools/measure_output_spread.py; re-measure rather than edit by hand.\n"
        f"# Measured {dt.date.today().isoformat()}: committed outputs vs {', '.join(r.name for r in args.runs)}"
        + (f"; seed runs {', '.join(r.name for r in args.seed_runs)}" if args.seed_runs else "") + ".\n"
        + (f"# {args.note}\n" if args.note else "")
        + f"# atol/rtol = {args.factor:g} x the largest deviation measured (rounded up to 2 digits);\n"
        "# checks_only: the text itself differs, or a tolerance would have to exceed 0.5, so only the\n"
        "# chapter's # Check cells judge the cell. for_comparison_another_seed: the spread with another\n"
        "# seed (not used for the tolerance; a fully diverged run could move that far).\n"
    )
    body = yaml.safe_dump({"factor": args.factor, "chapters": chapters}, sort_keys=False, allow_unicode=True, width=110)
    args.out.write_text(header + body, encoding="utf-8")
    n = sum(len(v) for v in chapters.values())
    print(f"{n} cells in {len(chapters)} chapters need a tolerance; written to {args.out}")
    for name, cells in chapters.items():
        for cid, e in cells.items():
            kind = "checks_only" if e.get("checks_only") else f"atol {e['atol']:g} rtol {e['rtol']:g}"
            print(f"  {name} {cid}: {kind}  ({e['cell']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
