"""The runner: book order, atomic outputs, failure reports, the GPU kernel's clear error, the report."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bigmodel_utils import run


def make_nb(path, *sources):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "bigmodel-cpu", "display_name": "cpu", "language": "python"}
    params = new_code_cell('profile = "full"\ndevice = "auto"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


SETUP = "import bigmodel_utils as bmu\nsession = bmu.setup_notebook(profile, device, seed)"


def test_book_order_follows_toc_and_every_chapter_has_a_source(root):
    order = run.book_order()
    assert "mnist_cnn" in order and order.index("mathematics") < order.index("mnist_cnn")
    assert sorted(order) == sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))


def test_resolve_notebooks():
    assert [p.stem for p in run.resolve_notebooks([])] == run.book_order()
    assert [p.stem for p in run.resolve_notebooks(["notebooks/mnist_cnn.ipynb"])] == ["mnist_cnn"]
    with pytest.raises(SystemExit, match="no notebook"):
        run.resolve_notebooks(["nope"])


def test_success_writes_output_and_records_device(tmp_path):
    src = make_nb(tmp_path / "ok.ipynb", SETUP, "print(session.profile.name)")
    entry = run.execute_one(src, tmp_path / "out" / "ok.ipynb", profile="smoke", kernel="cpu", seed=1, progress=False)
    assert entry["status"] == "ok" and entry["device"] == "cpu" and entry["kernel"] == "bigmodel-cpu"
    assert entry["peak_memory_mb"] > 10 and entry["seconds"] > 0
    out = nbformat.read(tmp_path / "out" / "ok.ipynb", 4)
    assert "smoke" in out.cells[-1].outputs[0]["text"]
    assert not list((tmp_path / "out").glob("*.running.ipynb"))


def test_failure_keeps_last_good_output_and_names_the_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "FAILED", tmp_path / "failed")
    src = make_nb(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('boom')")
    dest = tmp_path / "out" / "bad.ipynb"
    dest.parent.mkdir()
    dest.write_text("LAST GOOD OUTPUTS")
    with pytest.raises(run.NotebookFailed) as err:
        run.execute_one(src, dest, profile="smoke", kernel="cpu", seed=0, progress=False)
    msg = str(err.value)
    assert "ValueError: boom" in msg and "cell" in msg and "last good output left untouched" in msg
    assert dest.read_text() == "LAST GOOD OUTPUTS"
    assert (tmp_path / "failed" / "bad.ipynb").is_file()
    assert not list(dest.parent.glob("*.running.ipynb"))


def test_gpu_kernel_without_gpu_stops_with_clear_message(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the GPU kernel runs instead of failing")
    monkeypatch.setattr(run, "FAILED", tmp_path / "failed")
    src = make_nb(tmp_path / "gpu.ipynb", SETUP)
    with pytest.raises(run.NotebookFailed) as err:
        run.execute_one(src, tmp_path / "gpu_out.ipynb", profile="smoke", kernel="gpu", seed=0, progress=False)
    assert "DeviceUnavailableError" in str(err.value) and "bigmodel-cpu" in str(err.value)


def test_cli_rejects_unknown_profile_and_kernel(capsys):
    for args in (["--profile", "huge"], ["--kernel", "tpu"]):
        with pytest.raises(SystemExit) as err:
            run.main(args)
        assert err.value.code == 2
    assert "valid profiles" in capsys.readouterr().err


def test_report_merges_and_keeps_last_good_entry(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    good = {"status": "ok", "seconds": 3.0, "profile": "smoke", "kernel": "bigmodel-cpu", "device": "cpu",
            "threads": 2, "gpu": None, "peak_memory_mb": 100,
            "versions": {"python": "3.11", "torch": "t", "keras": "k", "numpy": "n"}, "finished": "2026-01-01T00:00:00+00:00"}
    run.update_report(path, "smoke", "cpu", {"mnist_cnn": good})
    run.update_report(path, "smoke", "cpu", {"mnist_cnn": {"status": "failed", "error": "boom", "finished": "x"}})
    rep = json.loads(path.read_text())
    entry = rep["notebooks"]["mnist_cnn"]
    assert entry["seconds"] == 3.0 and entry["last_failure"]["error"] == "boom"
    assert rep["total_seconds"] == 3.0 and "logical CPUs" in rep["machine"]
    page = tmp_path / "page.md"
    text = run.render_report_page(tmp_path, page)
    assert "| mnist_cnn | 3.0 | cpu |" in text and page.read_text() == text


def test_interrupted_run_keeps_last_good_output(tmp_path, root):
    """SIGTERM in the middle of a notebook: no half-written output, no temporary file left."""
    import signal
    import subprocess
    import sys
    import time

    src = make_nb(root / "notebooks" / "zz_interrupt_test.ipynb", SETUP, "import time\ntime.sleep(60)")
    out = tmp_path / "out"
    out.mkdir()
    (out / "zz_interrupt_test.ipynb").write_text("LAST GOOD OUTPUTS")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bigmodel_utils.run", "--output-dir", str(out), "--no-progress",
                                 "zz_interrupt_test"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob("*.running.ipynb")):
            time.sleep(0.2)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        src.unlink()
    assert proc.returncode != 0
    assert (out / "zz_interrupt_test.ipynb").read_text() == "LAST GOOD OUTPUTS"
    assert not list(out.glob("*.running.ipynb"))


def test_cost_summary_gives_gpu_speedup_and_flags_budget_overruns(tmp_path):
    def write(name, profile, kernel, seconds):
        (tmp_path / name).write_text(json.dumps({"profile": profile, "kernel": kernel, "notebooks": {
            n: {"status": "ok", "seconds": s} for n, s in seconds.items()}}))

    write("full-cpu.json", "full", "bigmodel-cpu", {"mnist_cnn": 250.0, "mathematics": 20.0})
    write("full-gpu.json", "full", "bigmodel-gpu", {"mnist_cnn": 100.0})
    write("smoke-cpu.json", "smoke", "bigmodel-cpu", {"mnist_cnn": 12.0, "mathematics": 31.0})
    lines = run.cost_summary(tmp_path)
    assert "| mnist_cnn | 250.0 **over** | 12.0 | 100.0 | 2.5x |" in lines
    assert "| mathematics | 20.0 | 31.0 **over** | – | – |" in lines
    assert any("torch unknown" in line and "not the GPU alone" in line for line in lines)
    assert run.cost_summary(tmp_path / "empty") == []
