import json
import random

import numpy as np
import pytest
import torch

from bigmodel_utils import devices
from bigmodel_utils.devices import (
    DeviceUnavailableError,
    environment_report,
    resolve_device,
    seed_everything,
    set_threads,
    setup_notebook,
)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(devices, "_cuda_available", lambda: False)
    monkeypatch.delenv("BIGMODEL_DEVICE", raising=False)


def test_cpu_and_auto_without_gpu(no_cuda):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    assert resolve_device(None) == "cpu"
    assert resolve_device(" CPU ") == "cpu"


def test_cuda_without_gpu_is_a_clear_error(no_cuda):
    """Asked for in the parameters cell: the remedy is that cell (which is in control)."""
    with pytest.raises(DeviceUnavailableError, match='set device = "auto"') as err:
        resolve_device("cuda")
    assert "torch.cuda.is_available() is False" in str(err.value) and "kernel" not in str(err.value)


def test_auto_follows_environment_variable(no_cuda, monkeypatch):
    """The GPU kernel asks through BIGMODEL_DEVICE: the remedy names the CPU kernel, and nothing that
    cannot work (device='auto' is what was passed)."""
    monkeypatch.setenv("BIGMODEL_DEVICE", "cuda")
    with pytest.raises(DeviceUnavailableError, match=r"CPU kernel 'Python 3 \(bigmodel, CPU\)'") as err:
        resolve_device("auto")
    assert "device=" not in str(err.value) and "parameters cell" not in str(err.value)
    monkeypatch.setenv("BIGMODEL_DEVICE", "cpu")
    assert resolve_device("auto") == "cpu"


def test_cuda_when_present(monkeypatch):
    monkeypatch.setattr(devices, "_cuda_available", lambda: True)
    monkeypatch.delenv("BIGMODEL_DEVICE", raising=False)
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_unknown_device(no_cuda):
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(7)
    a = draw()
    seed_everything(7)
    assert draw() == a
    seed_everything(8)
    assert draw() != a


def test_seed_everything_seeds_keras():
    import keras

    seed_everything(3)
    a = keras.random.normal((3,)).cpu().numpy()
    seed_everything(3)
    assert np.array_equal(keras.random.normal((3,)).cpu().numpy(), a)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        seed_everything(bad)


def test_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        monkeypatch.setenv("BIGMODEL_THREADS", "2")
        assert set_threads() == 2
        with pytest.raises(ValueError):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_environment_report_is_one_line():
    line = environment_report("cpu")
    assert "\n" not in line
    for part in ("Python", "torch", "keras", "numpy", "device cpu", "CPU threads"):
        assert part in line


def test_setup_notebook(no_cuda, tmp_path, monkeypatch, capsys):
    info = tmp_path / "info.json"
    monkeypatch.setenv("BIGMODEL_RUN_INFO", str(info))
    s = setup_notebook("smoke", "auto", 5)
    assert (s.profile.name, s.device, s.seed) == ("smoke", "cpu", 5)
    assert "Environment:" in capsys.readouterr().out
    written = json.loads(info.read_text())
    assert written["device"] == "cpu" and written["profile"] == "smoke" and written["threads"] >= 1


def test_setup_notebook_rejects_bad_profile_and_device(no_cuda):
    with pytest.raises(ValueError, match="valid profiles"):
        setup_notebook("huge")
    with pytest.raises(DeviceUnavailableError):
        setup_notebook("smoke", "cuda")
