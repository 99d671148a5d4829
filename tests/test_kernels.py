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


def test_install_for_the_user_is_found_by_any_jupyter(tmp_path):
    """`python -m bigmodel_utils.kernels install --user` (make kernels-user): the kernels land in the
    user's Jupyter data folder, which every Jupyter client and VS Code searches, and launch this Python."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "user-data")}
    out = subprocess.run([sys.executable, "-m", "bigmodel_utils.kernels", "install", "--user"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "user-data" / "kernels" / "bigmodel-cpu") in out
    spec = json.loads((tmp_path / "user-data" / "kernels" / "bigmodel-cpu" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["env"]["CUDA_VISIBLE_DEVICES"] == ""
    bad = subprocess.run([sys.executable, "-m", "bigmodel_utils.kernels", "install", "--user", "--prefix", "/x"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not both" in bad.stderr
