"""Compare a fresh execution of a notebook with its committed outputs, on any CPU.

nbval compares outputs character by character, which only works on the machine
that produced them: floating-point kernels differ between CPU families and
thread counts in their last digits, and training runs drift further. Here every
output text is split into numbers and the text between them:

* the text between numbers must match exactly (after the sanitising rules of
  ``tests/nbval_sanitize.cfg``, the same ones nbval uses, and with runs of
  white space collapsed, since table columns widen when a number does);
* integers must match exactly, and a float may differ by one unit in its last
  printed digit (round-off can only move a value across a rounding boundary),
  or by ``DEFAULT_ATOL`` for values that are themselves round-off (``3.6e-15``);
* cells whose numbers come from training or long float chains carry a measured
  tolerance in ``tests/output_tolerances.yml``: ``atol`` and ``rtol`` as in
  ``numpy.isclose``, written by ``tools/measure_output_spread.py`` from the
  spread between executions on different CPUs and thread counts, or
  ``checks_only`` where even the text differs; those cells are checked by the
  chapter's ``# Check`` cells, which run during execution.

Images are not compared (their pixels differ with every float); the ``# Check``
cells assert what the figures show. Cells tagged ``nbval-ignore-output`` or
``nbval-skip`` and papermill's injected-parameters cell are skipped, as nbval does.
"""
from __future__ import annotations

import configparser
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SANITIZE_FILE = ROOT / "tests" / "nbval_sanitize.cfg"
TOLERANCE_FILE = ROOT / "tests" / "output_tolerances.yml"
DEFAULT_ATOL = 1e-12
SKIP_TAGS = ("nbval-ignore-output", "nbval-skip", "injected-parameters")
TEXT_MIMES = ("text/plain", "text/markdown", "text/latex", "text/html")
# a number: optional sign, digits with optional fraction (or a bare fraction), optional exponent;
# not glued to a preceding letter, digit, dot or underscore (so "cnn_e5" and "x86" stay text)
NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Tolerance:
    """How far the numbers of one cell may move: ``|a - b| <= atol + rtol * |a|`` (a: committed)."""

    atol: float = 0.0
    rtol: float = 0.0
    checks_only: bool = False

    def __post_init__(self):
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {v!r}")


DEFAULT = Tolerance()


def load_sanitizers(path: Path | str = SANITIZE_FILE) -> list[tuple[re.Pattern, str]]:
    """The regex/replace pairs of an nbval sanitize file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sanitize file {path} does not exist")
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(path, encoding="utf-8")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def terminal_text(text: str) -> str:
    """What a terminal shows: on each line only the text after the last carriage return (progress bars)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def sanitize(text: str, sanitizers: list[tuple[re.Pattern, str]]) -> str:
    text = terminal_text(text)
    for pattern, replace in sanitizers:
        text = pattern.sub(replace, text)
    return text


def split_numbers(text: str) -> tuple[list[str], list[str]]:
    """Split into text pieces and number tokens: ``texts[0] num[0] texts[1] ... texts[-1]``,
    white space collapsed in the text pieces."""
    texts, numbers, last = [], [], 0
    for m in NUMBER.finditer(text):
        texts.append(text[last:m.start()])
        numbers.append(m.group())
        last = m.end()
    texts.append(text[last:])
    return [" ".join(t.split()) for t in texts], numbers


def last_digit_unit(token: str) -> float:
    """One unit in the last printed digit: 0.9835 -> 1e-4, 3.6e-15 -> 1e-16, 42 -> 0 (integers are exact)."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return 0.0
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_agree(ref: str, new: str, tol: Tolerance = DEFAULT) -> bool:
    """Whether two printed numbers agree within ``tol`` or the default (last printed digit) rule."""
    a, b = float(ref), float(new)
    diff = abs(a - b)
    if diff <= tol.atol + tol.rtol * abs(a):
        return True
    unit = max(last_digit_unit(ref), last_digit_unit(new))
    if unit == 0.0:  # two integers
        return False
    return diff <= max(unit, DEFAULT_ATOL) * (1 + 1e-9)


@dataclass
class CellOutputs:
    """The comparable text of one code cell: per stream, and per rich output in order."""

    cell_id: str
    index: int
    source: str
    texts: list[tuple[str, str]] = field(default_factory=list)  # (label, text)


def comparable_cells(nb, sanitizers) -> list[CellOutputs]:
    """The code cells with their outputs reduced to what can be compared across machines."""
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:  # papermill gives it a new id every run
            continue
        co = CellOutputs(cell_id=cell.get("id", f"#{i}"), index=i, source=cell.source)
        if any(t in tags for t in SKIP_TAGS):
            co.texts = None  # skipped
            cells.append(co)
            continue
        streams: dict[str, str] = {}
        rich = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                streams[out.name] = streams.get(out.name, "") + out.text
            elif out.output_type in ("execute_result", "display_data"):
                data = out.get("data", {})
                for mime in TEXT_MIMES:
                    if mime in data:
                        text = data[mime] if isinstance(data[mime], str) else "".join(data[mime])
                        rich.append((f"{out.output_type} {mime}", text))
                        break  # one text form per output: the richest duplicates the same numbers
            elif out.output_type == "error":
                rich.append(("error", f"{out.ename}: {out.evalue}"))
        co.texts = [(f"stream {k}", sanitize(v, sanitizers)) for k, v in sorted(streams.items())]
        co.texts += [(label, sanitize(t, sanitizers)) for label, t in rich]
        cells.append(co)
    return cells


@dataclass
class Mismatch:
    """One cell whose fresh output does not agree with the committed one."""

    cell_id: str
    index: int
    source: str
    reason: str
    structural: bool  # the text differs, not only numbers
    deviations: list[tuple[float, float]] = field(default_factory=list)  # (committed, fresh) numbers that differ

    def render(self) -> str:
        head = self.source.strip().splitlines()[0][:70] if self.source.strip() else ""
        return f"cell {self.index} (id {self.cell_id}, `{head}`): {self.reason}"


def _first_difference(a: str, b: str, width: int = 60) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 20)
    return f"committed {a[lo:lo + width]!r} vs fresh {b[lo:lo + width]!r}"


def compare_cell(ref: CellOutputs, new: CellOutputs, tol: Tolerance = DEFAULT) -> Mismatch | None:
    """None if the cell agrees; otherwise what differs (all differing numbers are listed)."""
    def mismatch(reason, structural, devs=()):
        return Mismatch(ref.cell_id, ref.index, ref.source, reason, structural, list(devs))

    if ref.texts is None or new.texts is None or tol.checks_only:
        return None
    if ref.source != new.source:
        return mismatch("the source differs between the two notebooks", True)
    ref_labels, new_labels = [label for label, _ in ref.texts], [label for label, _ in new.texts]
    if ref_labels != new_labels:
        return mismatch(f"outputs differ in kind: committed {ref_labels}, fresh {new_labels}", True)
    devs, first_bad = [], None
    for (label, a), (_, b) in zip(ref.texts, new.texts):
        ta, na = split_numbers(a)
        tb, nb_ = split_numbers(b)
        if ta != tb:
            return mismatch(f"{label}: text differs: {_first_difference(a, b)}", True)
        for x, y in zip(na, nb_):
            if x != y:
                devs.append((float(x), float(y)))
                if first_bad is None and not numbers_agree(x, y, tol):
                    first_bad = f"{label}: {x} (committed) vs {y} (fresh)"
    if first_bad:
        return mismatch(f"numbers beyond the tolerance {tol_text(tol)}, first: {first_bad}", False, devs)
    return None


def tol_text(tol: Tolerance) -> str:
    if tol == DEFAULT:
        return "(default: integers exact, floats to their last printed digit)"
    return f"(atol {tol.atol:g}, rtol {tol.rtol:g})"


def load_tolerances(path: Path | str = TOLERANCE_FILE) -> dict[str, dict[str, Tolerance]]:
    """``{chapter: {cell id: Tolerance}}`` from the YAML file (empty if the file does not exist)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = {}
    for chapter, cells in (raw.get("chapters") or {}).items():
        out[chapter] = {}
        for cell_id, spec in (cells or {}).items():
            try:
                out[chapter][str(cell_id)] = Tolerance(
                    atol=float(spec.get("atol", 0)), rtol=float(spec.get("rtol", 0)),
                    checks_only=bool(spec.get("checks_only", False)))
            except (AttributeError, ValueError) as err:
                raise ValueError(f"{path}: chapter {chapter}, cell {cell_id}: {err}") from None
    return out


def compare_notebooks(committed, fresh, tolerances: dict[str, Tolerance] | None = None,
                      sanitizers=None) -> list[Mismatch]:
    """Every code cell of ``fresh`` against ``committed`` (paths or notebook nodes); [] if all agree."""
    ref_nb = committed if not isinstance(committed, (str, Path)) else nbformat.read(committed, 4)
    new_nb = fresh if not isinstance(fresh, (str, Path)) else nbformat.read(fresh, 4)
    sanitizers = load_sanitizers() if sanitizers is None else sanitizers
    tolerances = tolerances or {}
    ref_cells, new_cells = comparable_cells(ref_nb, sanitizers), comparable_cells(new_nb, sanitizers)
    if [c.cell_id for c in ref_cells] != [c.cell_id for c in new_cells]:
        return [Mismatch("-", -1, "", "the notebooks have different code cells (ids differ)", True)]
    unknown = set(tolerances) - {c.cell_id for c in ref_cells}
    if unknown:
        return [Mismatch("-", -1, "", f"tolerances name cells that do not exist: {sorted(unknown)}", True)]
    out = []
    for r, n in zip(ref_cells, new_cells):
        m = compare_cell(r, n, tolerances.get(r.cell_id, DEFAULT))
        if m:
            out.append(m)
    return out


def render_mismatches(name: str, mismatches: list[Mismatch]) -> str:
    lines = [f"{name}: {len(mismatches)} cell(s) differ from the committed outputs beyond the tolerances "
             f"of {TOLERANCE_FILE.relative_to(ROOT)}:"]
    lines += ["  " + m.render() for m in mismatches]
    lines.append("If the change is intended, re-execute the chapter (`make smoke` or `python -m bigmodel_utils.run "
                 f"{name}`); if a cell's numbers legitimately vary between CPUs, re-measure its tolerance with "
                 "tools/measure_output_spread.py.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bigmodel_utils.output_check COMMITTED FRESH [CHAPTER]``: compare two executed copies."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.output_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("committed", type=Path)
    parser.add_argument("fresh", type=Path)
    parser.add_argument("--chapter", help="chapter whose tolerances apply (default: the file name)")
    args = parser.parse_args(argv)
    name = args.chapter or args.committed.stem
    mismatches = compare_notebooks(args.committed, args.fresh, load_tolerances().get(name, {}))
    print(render_mismatches(name, mismatches) if mismatches else f"{name}: all outputs agree")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
