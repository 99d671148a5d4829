"""The runner: book order, atomic outputs, failure reports, the GPU kernel's clear error, the report,
incremental execution, time limits, faults (dead or missing kernels, malformed notebooks, signals,
kill -9, concurrent runs)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bigmodel_utils import run


def make_nb(path, *sources, title=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "bigmodel-cpu", "display_name": "cpu", "language": "python"}
    params = new_code_cell('profile = "full"\ndevice = "auto"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = ([new_markdown_cell(title)] if title else []) + [params] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def iso(tmp_path, monkeypatch):
    """The runner's folders (failed copies, temporaries, state, reports, report page) inside tmp_path."""
    for name in ("FAILED", "RUNNING", "STATE_DIR", "REPORTS"):
        monkeypatch.setattr(run, name, tmp_path / name.lower())
    monkeypatch.setattr(run, "REPORT_PAGE", tmp_path / "page.md")
    return tmp_path


@pytest.fixture
def fake_execute(monkeypatch):
    """Replace the kernel by a stub: ``plan[name]`` is seconds, "fail" or "interrupt"; calls are recorded."""
    plan, calls = {}, []

    def fake(src, dest, **kw):
        calls.append((src.stem, kw))
        what = plan.get(src.stem, 1.0)
        if what == "interrupt":
            raise run.Interrupted(signal.SIGTERM)
        if what == "fail":
            raise run.NotebookFailed(f"{src.stem}: boom")
        info = {"device": "cpu", "threads": 2, "torch": "t", "keras": "k"}
        return run._entry(what, kw["profile"], kw["kernel"], 0, info)

    monkeypatch.setattr(run, "execute_one", fake)
    return plan, calls


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
    assert run.resolve_notebooks(["mathematics"]) == [run.NOTEBOOKS / "mathematics.ipynb"]


def test_a_copy_outside_notebooks_runs_only_with_an_output_dir(tmp_path, iso, fake_execute, capsys):
    """A scratch copy of a chapter must not silently run the committed notebook of the same name."""
    copy = make_nb(tmp_path / "scratch" / "mathematics.ipynb", "x = 1")
    with pytest.raises(run.RunRefused, match="--output-dir"):
        run.resolve_notebooks([str(copy)])
    assert run.resolve_notebooks([str(copy)], outside_ok=True) == [copy]
    assert run.main([str(copy)]) == 2
    assert "pass --output-dir" in capsys.readouterr().err and not fake_execute[1]
    assert run.main(["--output-dir", str(tmp_path / "out"), str(copy)]) == 0
    assert fake_execute[1][0][0] == "mathematics"


def test_success_writes_output_and_records_device(tmp_path):
    src = make_nb(tmp_path / "ok.ipynb", SETUP, "print(session.profile.name)")
    entry = run.execute_one(src, tmp_path / "out" / "ok.ipynb", profile="smoke", kernel="cpu", seed=1, progress=False)
    assert entry["status"] == "ok" and entry["device"] == "cpu" and entry["kernel"] == "bigmodel-cpu"
    assert entry["peak_memory_mb"] > 10 and entry["seconds"] > 0
    out = nbformat.read(tmp_path / "out" / "ok.ipynb", 4)
    assert "smoke" in out.cells[-1].outputs[0]["text"]
    assert entry["machine"] == run.machine_description()
    assert not list((tmp_path / "out").glob("*.running.ipynb")) and not list(run.RUNNING.glob(f"{os.getpid()}-*"))


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
    assert not list(dest.parent.glob("*.running.ipynb")) and not list(run.RUNNING.glob(f"{os.getpid()}-*"))


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


def test_incremental_run_skips_unchanged_chapters_and_carries_new_prose(tmp_path, iso, capsys):
    src = make_nb(tmp_path / "src" / "ch.ipynb", "print('hello')", title="# Old title")
    out = tmp_path / "out"
    args = ["--output-dir", str(out), "--no-progress", str(src)]
    assert run.main(args) == 0
    dest = out / "ch.ipynb"
    first = dest.read_bytes()
    assert "ch: ok in" in capsys.readouterr().out

    assert run.main(args) == 0
    assert "[1/1] ch: unchanged, skipped\n" in capsys.readouterr().out and dest.read_bytes() == first

    nb = nbformat.read(src, 4)
    nb.cells[0].source = "# New title"
    nbformat.write(nb, src)
    assert run.main(args) == 0
    assert "[1/1] ch: unchanged, skipped (markdown updated)" in capsys.readouterr().out
    new, old = nbformat.read(dest, 4), nbformat.reads(first.decode(), 4)
    assert new.cells[0].source == "# New title"
    assert [c for c in new.cells if c.cell_type == "code"] == [c for c in old.cells if c.cell_type == "code"]
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in new.cells)
    assert new.cells[1].source == 'profile = "smoke"\ndevice = "auto"\nseed = 0', "one parameters cell, as run"
    assert not list(iso.joinpath("running").glob("*.ipynb"))

    state = json.loads((iso / "state_dir" / "smoke-cpu.json").read_text())
    assert list(state) == [str(dest)]
    assert state[str(dest)] not in (out / "execution_report.json").read_text(), "fingerprints stay out of the report"

    assert run.main(args + ["--force"]) == 0
    assert "ch: ok in" in capsys.readouterr().out


def test_fingerprint_covers_code_tags_parameters_kernel_threads_not_prose(tmp_path, monkeypatch):
    src = make_nb(tmp_path / "a.ipynb", "x = 1", title="# Title")
    fp = lambda **kw: run.fingerprint(src, **{"profile": "smoke", "seed": 0, "kernel": "cpu", **kw})  # noqa: E731
    base = fp()
    nb = nbformat.read(src, 4)

    def edited(change):
        copy = nbformat.from_dict(json.loads(json.dumps(nb)))
        change(copy)
        nbformat.write(copy, src)
        return fp()

    assert edited(lambda n: setattr(n.cells[0], "source", "# Other title")) == base
    injected = new_code_cell("seed = 3")
    injected.metadata["tags"] = ["injected-parameters"]
    assert edited(lambda n: n.cells.insert(2, injected)) == base
    assert edited(lambda n: setattr(n.cells[2], "source", "x = 2")) != base
    assert edited(lambda n: n.cells[2].metadata.setdefault("tags", []).append("raises-exception")) != base
    nbformat.write(nb, src)
    assert fp() == base and fp(seed=1) != base and fp(profile="full") != base and fp(kernel="gpu") != base
    assert fp(kernel="bigmodel-cpu") == base
    monkeypatch.setenv("BIGMODEL_THREADS", "7")
    assert fp() != base


def test_missing_or_unreadable_destination_is_executed_again(tmp_path):
    src = make_nb(tmp_path / "a.ipynb", "x = 1")
    dest = tmp_path / "out" / "a.ipynb"
    state = {str(dest): "f"}
    assert run.up_to_date(src, dest, "f", state) is None
    dest.parent.mkdir()
    dest.write_text("{ half a notebook")
    assert run.up_to_date(src, dest, "f", state) is None
    assert run.up_to_date(src, src, "f", {str(src): "f"}) == "skipped"  # the smoke profile runs in place
    assert run.up_to_date(src, src, "g", {str(src): "f"}) is None


def test_a_cell_over_the_time_limit_fails_naming_chapter_cell_and_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "FAILED", tmp_path / "failed")
    assert run.default_cell_timeout("smoke") == 150 and run.default_cell_timeout("full") == 1200
    monkeypatch.setitem(run.BUDGET_SECONDS, "smoke", 0.4)  # 5 x 0.4 s: a 2 s limit
    src = make_nb(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(60)", "y = 2")
    start = time.monotonic()
    with pytest.raises(run.NotebookFailed) as err:
        run.execute_one(src, tmp_path / "out" / "slow.ipynb", profile="smoke", kernel="cpu", seed=0, progress=False)
    assert time.monotonic() - start < 40
    first = str(err.value).splitlines()[0]
    assert first.startswith("slow: cell 3 exceeded the 2 s per-cell limit of the smoke profile (--cell-timeout to change)")
    assert (tmp_path / "failed" / "slow.ipynb").is_file() and not (tmp_path / "out" / "slow.ipynb").exists()


def test_kernel_failures_and_malformed_notebooks_name_the_remedy(tmp_path, iso, monkeypatch):
    src = make_nb(tmp_path / "ch.ipynb", "x = 1")
    monkeypatch.setattr(run, "kernel_name", lambda kind: "bigmodel-nope")
    with pytest.raises(run.NotebookFailed, match=r"no Jupyter kernel named 'bigmodel-nope'.*python -m bigmodel_utils.kernels install"):
        run.execute_one(src, tmp_path / "out" / "ch.ipynb", profile="smoke", kernel="cpu", seed=0, progress=False)

    for name, argv in [("bigmodel-absent", ["/nonexistent/python", "-f", "{connection_file}"]),
                       ("bigmodel-exits", [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"])]:
        spec = tmp_path / "jupyter" / "kernels" / name
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
        monkeypatch.setattr(run, "kernel_name", lambda kind, name=name: name)
        with pytest.raises(run.NotebookFailed) as err:
            run.execute_one(src, tmp_path / "out" / "ch.ipynb", profile="smoke", kernel="cpu", seed=0, progress=False)
        assert f"the kernel '{name}' could not start" in str(err.value) and "kernels install" in str(err.value)

    bad = tmp_path / "broken.ipynb"
    bad.write_text('{"cells": [')
    with pytest.raises(run.NotebookFailed, match=r"broken\.ipynb is not a valid notebook.*git checkout --"):
        run.execute_one(bad, tmp_path / "out" / "broken.ipynb", profile="smoke", kernel="cpu", seed=0, progress=False)
    assert not (tmp_path / "out" / "ch.ipynb").exists() and not list((iso / "running").glob("*.ipynb"))


def test_a_dead_kernel_or_malformed_notebook_is_recorded_and_the_run_goes_on(tmp_path, iso, capsys, root):
    committed = (root / "notebooks" / "mathematics.ipynb").read_bytes()
    dead = make_nb(tmp_path / "src" / "dead.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    bad = tmp_path / "src" / "broken.ipynb"
    bad.write_text("{not json")
    copy = make_nb(tmp_path / "scratch" / "mathematics.ipynb", "print('scratch copy')")
    out = tmp_path / "out"
    assert run.main(["--output-dir", str(out), "--no-progress", str(dead), str(bad), str(copy)]) == 1
    err = capsys.readouterr().err
    dead_lines = [line for line in err.splitlines() if "dead:" in line]
    assert len(dead_lines) == 1 and "the kernel died (likely out of memory or killed); rerun that chapter alone" in dead_lines[0]
    assert "broken.ipynb is not a valid notebook" in err and "git checkout --" in err
    report = json.loads((out / "execution_report.json").read_text())["notebooks"]
    assert report["mathematics"]["status"] == "ok"
    assert "kernel died" in report["dead"]["last_failure"]["error"]
    assert report["broken"]["status"] == "never succeeded"
    assert (iso / "failed" / "dead.ipynb").is_file()
    assert "scratch copy" in nbformat.read(out / "mathematics.ipynb", 4).cells[-1].outputs[0]["text"]
    assert (root / "notebooks" / "mathematics.ipynb").read_bytes() == committed


def test_each_chapter_is_reported_at_once_with_its_machine_and_one_file_per_kernel_kind(iso, fake_execute, capsys):
    plan, calls = fake_execute
    plan.update(mathematics=2.0, mnist_cnn=9.0)
    assert run.main(["--kernel", "bigmodel-cpu", "--no-progress", "mathematics", "mnist_cnn"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Slowest chapters of this run:"):]
    assert table.index("mnist_cnn") < table.index("mathematics") and "9.0" in table
    assert [kw["cell_timeout"] for _, kw in calls] == [150, 150]
    assert [p.name for p in (iso / "reports").glob("*.json")] == ["smoke-cpu.json"]
    first = json.loads((iso / "reports" / "smoke-cpu.json").read_text())["notebooks"]
    assert all(e["machine"] == run.machine_description() for e in first.values())
    assert "| mnist_cnn | 9.0 | cpu |" in (iso / "page.md").read_text()

    plan.update(mathematics=3.0, mnist_cnn="interrupt")
    assert run.main(["--kernel", "cpu", "--force", "--cell-timeout", "7", "mathematics", "mnist_cnn"]) == 143
    assert "interrupted in mnist_cnn; committed outputs untouched" in capsys.readouterr().err
    assert calls[-1][1]["cell_timeout"] == 7
    second = json.loads((iso / "reports" / "smoke-cpu.json").read_text())["notebooks"]
    assert second["mathematics"]["seconds"] == 3.0, "the chapter finished before the abort is recorded"
    assert second["mnist_cnn"] == first["mnist_cnn"]
    assert [p.name for p in (iso / "reports").glob("*.json")] == ["smoke-cpu.json"]


def test_a_corrupt_report_stops_the_run_before_anything_executes(tmp_path, iso, fake_execute, capsys):
    src = make_nb(tmp_path / "a.ipynb", "x = 1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "execution_report.json").write_text('{"notebooks": {"a": ')
    assert run.main(["--output-dir", str(out), str(src)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "execution_report.json is corrupt" in err[0]
    assert "git checkout --" in err[0] and "delete it" in err[0] and not fake_execute[1]


def test_concurrent_report_writers_keep_every_entry(tmp_path):
    path = tmp_path / "r.json"
    entry = {"status": "ok", "seconds": 1.0}

    def writer(k):
        for i in range(12):
            run.update_report(path, "smoke", "cpu", {f"ch{k}_{i}": dict(entry)})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = json.loads(path.read_text())
    assert len(report["notebooks"]) == 36 and report["total_seconds"] == 36.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.json.lock"]


def test_report_page_shows_only_successes_grouped_by_machine(tmp_path):
    def e(seconds, machine):
        return {"status": "ok", "seconds": seconds, "device": "cpu", "threads": 2, "gpu": None, "peak_memory_mb": 1,
                "versions": {"torch": "t", "keras": "k"}, "machine": machine, "finished": "2026-01-01T00:00:00+00:00"}

    (tmp_path / "full-cpu.json").write_text(json.dumps({"profile": "full", "kernel": "bigmodel-cpu", "notebooks": {
        "mathematics": e(5.0, "box A"), "mnist_cnn": e(7.0, "box B"),
        "cnn": {"status": "never succeeded", "last_failure": {"status": "failed", "error": "boom"}}}}))
    (tmp_path / "full-gpu.json").write_text(json.dumps({"profile": "full", "kernel": "bigmodel-gpu", "notebooks": {
        "mathematics": {"status": "never succeeded", "last_failure": {"error": "no GPU"}}}}))
    text = run.render_report_page(tmp_path, tmp_path / "page.md")
    assert "Machine: box A (1 chapter, 5 s)." in text and "Machine: box B (1 chapter, 7 s)." in text
    assert "| cnn |" not in text and "failed" not in text
    assert "kernel `bigmodel-gpu`" not in text
    (tmp_path / "full-cpu.json").unlink()
    assert "No run has been recorded yet." in run.render_report_page(tmp_path, tmp_path / "page.md")


def test_gpu_kernel_without_gpu_is_refused_once_up_front(tmp_path, iso, fake_execute, monkeypatch, capsys):
    import torch

    if not torch.cuda.is_available():
        assert run._gpu_available() is False
    monkeypatch.setattr(run, "_gpu_available", lambda: False)
    out = tmp_path / "out"
    assert run.main(["--kernel", "gpu", "--output-dir", str(out), "mathematics"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kernel cpu" in err[0]
    assert not fake_execute[1] and not (out / "execution_report.json").exists()


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, iso, fake_execute, capsys):
    src = make_nb(tmp_path / "a.ipynb", "x = 1")
    out = tmp_path / "out"
    with run.lock_output_dir(out):
        assert run.main(["--output-dir", str(out), str(src)]) == 2
    err = capsys.readouterr().err
    assert f"another run (pid {os.getpid()}) is writing to {out.resolve()}" in err and "--output-dir" in err
    assert not fake_execute[1]
    assert run.main(["--output-dir", str(out), str(src)]) == 0 and fake_execute[1]


def _start_sleeping_run(tmp_path, root):
    """A runner subprocess executing a 60 s sleep into ``out``; returns it once the cell runs, and its kernel."""
    src = make_nb(tmp_path / "src" / "zz_interrupt_test.ipynb", "import time\ntime.sleep(60)")
    out = tmp_path / "out"
    out.mkdir()
    (out / "zz_interrupt_test.ipynb").write_text("LAST GOOD OUTPUTS")
    proc = subprocess.Popen([sys.executable, "-m", "bigmodel_utils.run", "--output-dir", str(out), "--no-progress",
                             str(src)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not list(run.RUNNING.glob(f"{proc.pid}-*.running.ipynb")):
        time.sleep(0.2)
    while time.time() < deadline and '"status": "running"' not in _read_all(run.RUNNING.glob(f"{proc.pid}-*.running.ipynb")):
        time.sleep(0.2)  # papermill marks the sleeping cell running
    time.sleep(1)
    return proc, out, psutil.Process(proc.pid).children(recursive=True)


def _read_all(paths):
    return "".join(p.read_text() for p in paths if p.exists())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_keeps_last_good_output(tmp_path, root, sig, monkeypatch, capsys):
    """SIGTERM or SIGINT in the middle of a notebook: one line, no traceback, no half-written output, no
    temporary left, the kernel stopped. A second run into the same folder meanwhile is refused."""
    proc, out, kernel = _start_sleeping_run(tmp_path, root)
    try:
        assert kernel, "the kernel runs"
        monkeypatch.setattr(run, "execute_one", lambda *a, **k: pytest.fail("the second run executed"))
        assert run.main(["--output-dir", str(out), str(tmp_path / "src" / "zz_interrupt_test.ipynb")]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
        proc.send_signal(sig)  # to the runner only, not its process group: the runner must stop the kernel
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, output
    assert [line for line in output.splitlines() if line.startswith("interrupted")] == [
        "interrupted in zz_interrupt_test; committed outputs untouched"], output
    assert "Traceback" not in output and "ZMQError" not in output and "died" not in output, output
    assert (out / "zz_interrupt_test.ipynb").read_text() == "LAST GOOD OUTPUTS"
    assert sorted(p.name for p in out.iterdir()) == ["zz_interrupt_test.ipynb"]
    assert not list(run.RUNNING.glob(f"{proc.pid}-*"))
    _, alive = psutil.wait_procs(kernel, timeout=10)
    assert not alive, "the kernel was shut down"


def test_kill_9_leaves_nothing_in_the_destination_and_the_next_run_cleans_up(tmp_path, root):
    proc, out, kernel = _start_sleeping_run(tmp_path, root)
    proc.kill()
    proc.wait(timeout=30)
    for k in kernel:  # the orphaned kernel would notice its parent is gone only later
        k.kill()
    assert sorted(p.name for p in out.iterdir()) == ["zz_interrupt_test.ipynb"]
    assert (out / "zz_interrupt_test.ipynb").read_text() == "LAST GOOD OUTPUTS"
    left = list(run.RUNNING.glob(f"{proc.pid}-*"))
    assert left, "the temporaries of the killed run are in _build/running"
    assert set(left) <= set(run.remove_stale_temporaries(out)) and not any(p.exists() for p in left)


def test_entries_of_a_report_from_before_per_entry_machines_keep_their_machine(tmp_path):
    """An old report labelled its machine once; updating it must not relabel its entries with this machine."""
    path = tmp_path / "old.json"
    old = {"status": "ok", "seconds": 3.0, "profile": "smoke", "kernel": "bigmodel-cpu", "device": "cpu", "threads": 2,
           "gpu": None, "peak_memory_mb": 100, "versions": {"torch": "t", "keras": "k"}, "finished": "2026-01-01T00:00:00"}
    path.write_text(json.dumps({"profile": "smoke", "kernel": "bigmodel-cpu", "machine": "Old box, 2 logical CPUs",
                                "notebooks": {"mathematics": old}}))
    rep = run.update_report(path, "smoke", "cpu", {"mnist_cnn": {**old, "seconds": 4.0}})
    assert rep["notebooks"]["mathematics"]["machine"] == "Old box, 2 logical CPUs"
    assert rep["notebooks"]["mnist_cnn"]["machine"] == run.machine_description()


def test_fingerprint_of_a_chapter_that_reads_book_prose_follows_that_prose(tmp_path, monkeypatch):
    src = make_nb(tmp_path / "llm_assistant.ipynb", "x = 1")
    other = make_nb(tmp_path / "other.ipynb", "x = 1")
    fp = lambda s: run.fingerprint(s, profile="smoke", seed=0, kernel="cpu")  # noqa: E731
    assert set(run.PROSE_INPUTS) == {"app_language", "llm_assistant"}
    assert run.PROSE_INPUTS["app_language"]().startswith(b"(faq)=")
    assert run.PROSE_INPUTS["llm_assistant"]().startswith(b"chapters/")
    base, base_other = fp(src), fp(other)
    monkeypatch.setitem(run.PROSE_INPUTS, "llm_assistant", lambda: b"the book, edited")
    assert fp(src) != base and fp(other) == base_other


FIGURE = ("from bigmodel_utils import plots\nplots.use_book_style()\nimport matplotlib.pyplot as plt\n"
          "fig, ax = plt.subplots(figsize=({width}, 3))\nax.plot([1, 2])\nax.set_title('{title}', fontsize={size})")


def test_an_unreadable_figure_fails_the_chapter_naming_figure_problem_and_remedy(tmp_path, iso):
    dest = tmp_path / "out" / "figs.ipynb"
    good = make_nb(tmp_path / "good" / "figs.ipynb", FIGURE.format(width=6, title="Readable", size=12))
    assert run.execute_one(good, dest, profile="smoke", kernel="cpu", seed=0, progress=False)["status"] == "ok"
    assert dest.is_file()
    shown_early = FIGURE.format(width=4, title="Shown early", size=5) + "\nplt.show()"  # shown before the cell ends
    shown = make_nb(tmp_path / "shown" / "figs.ipynb", shown_early, "x = 1")
    bad = make_nb(tmp_path / "bad" / "figs.ipynb", FIGURE.format(width=16, title="Gallery", size=8))
    for src, title, problem in ((bad, "Gallery", "the figure is 1600 px wide"),
                                (shown, "Shown early", "text 'Shown early' is 5.0 pt on the page")):
        before = dest.read_bytes()
        with pytest.raises(run.NotebookFailed) as err:
            run.execute_one(src, dest, profile="smoke", kernel="cpu", seed=0, progress=False)
        first = str(err.value).splitlines()[0]
        assert first.startswith(f"figs: figure '{title}' is unreadable on the page: {problem}")
        assert first.endswith("make the figure narrower or its text larger; see plots.readability_problems")
        assert dest.read_bytes() == before and (iso / "failed" / "figs.ipynb").is_file()
        assert not list((iso / "running").glob(f"{os.getpid()}-*"))
    assert run.TEMP_NAME.match(f"{os.getpid()}-figs-0a1b2c3d.figures.json")
