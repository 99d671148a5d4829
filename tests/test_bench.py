"""The benchmarks run (quick settings, results to a temporary folder); `make bench` runs them in full."""
import json
import subprocess
import sys

import pytest


def run(root, tmp_path, *args):
    env = {"BENCH_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=600, env=env)


def test_quick_benchmarks_run(root, tmp_path):
    inf = run(root, tmp_path, "bench/inference.py", "--rounds", "1", "--calls", "3")
    assert inf.returncode == 0, inf.stderr[-3000:]
    result = json.loads((tmp_path / "inference.json").read_text())
    assert set(result["summary"]) == {"keras_predict", "keras_eager", "torch_eager", "onnxruntime"}
    assert "goal" in result["verdicts"][0]
    bt = run(root, tmp_path, "bench/book_time.py")
    assert bt.returncode == 0, bt.stderr[-3000:]
    assert "verdicts" in json.loads((tmp_path / "book_time.json").read_text())


def test_make_bench_runs_all_four(root):
    dry = subprocess.run(["make", "-n", "bench", "STAMP=/dev/null"], cwd=root, capture_output=True, text=True)
    assert "bench/run_all.py" in dry.stdout
    text = (root / "bench" / "run_all.py").read_text()
    for module in ("mnist_time_to_accuracy", "inference", "book_time", "book_build"):
        assert f"import {module}" in text


def test_time_to_accuracy_helpers(root):
    sys.path.insert(0, str(root / "bench"))
    import mnist_time_to_accuracy as tta

    res = {"checkpoints": [[1, 10.0, 0.985], [2, 20.0, 0.991]]}
    assert tta.time_to(res) == 20.0 and tta.time_to(res, 0.999) is None
    from common import ratio_line

    assert "goal met" in ratio_line("x", 30, 10, 3) and "missed" in ratio_line("x", 20, 10, 3)
    with pytest.raises(ZeroDivisionError):
        ratio_line("x", 1, 0, 3)
