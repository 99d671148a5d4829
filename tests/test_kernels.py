import json
import sys

import pytest

from bigmodel_utils import kernels


def test_cpu_kernel_hides_gpus_and_uses_torch_backend():
    spec = kernels.kernel_json("cpu")
    assert spec["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert spec["env"]["KERAS_BACKEND"] == "torch" and spec["env"]["BIGMODEL_DEVICE"] == "cpu"
    assert spec["argv"][0] == sys.executable and "{connection_file}" in spec["argv"]


def test_gpu_kernel_asks_for_cuda():
    spec = kernels.kernel_json("bigmodel-gpu")
    assert spec["env"]["BIGMODEL_DEVICE"] == "cuda" and "CUDA_VISIBLE_DEVICES" not in spec["env"]


def test_unknown_kernel():
    with pytest.raises(ValueError, match="cpu, gpu"):
        kernels.kernel_name("tpu")
    with pytest.raises(ValueError):
        kernels.kernel_json("tpu")


def test_install_into_a_prefix(tmp_path):
    paths = kernels.install(prefix=str(tmp_path))
    assert len(paths) == 2
    for p in paths:
        spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / p.rsplit("/", 1)[-1] / "kernel.json").read_text())
        assert spec["language"] == "python"


def test_both_kernels_are_registered_in_this_environment(capsys):
    """`make` runs `python -m bigmodel_utils.kernels install`; JupyterLab and papermill then find them."""
    kernels.main(["list"])
    out = capsys.readouterr().out
    assert "MISSING" not in out and "bigmodel-cpu" in out and "bigmodel-gpu" in out
