"""Data-parallel training: the 2-process smoke case with torchrun (gloo) matches 1 process."""
import numpy as np
import pytest
import torch

from bigmodel_utils.distributed import launch, shard, world


def test_shard_splits_a_global_batch():
    idx = torch.arange(8)
    assert shard(idx, 0, 2).tolist() == [0, 1, 2, 3] and shard(idx, 1, 2).tolist() == [4, 5, 6, 7]
    assert shard(idx, 0, 1).tolist() == idx.tolist()
    with pytest.raises(ValueError, match="evenly"):
        shard(torch.arange(7), 0, 2)


def test_world_defaults_to_one_process(monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(v, raising=False)
    assert world() == (0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert world() == (1, 2, 0)


def test_two_processes_match_one():
    """The smoke case of the scaling-out appendix: torchrun, 2 processes, gloo."""
    a = launch(1, 2, n_train=1024, global_batch=64)
    b = launch(2, 1, n_train=1024, global_batch=64)
    assert (a["world_size"], b["world_size"], b["backend"]) == (1, 2, "gloo")
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.005
    assert np.abs(np.array(a["parameters"]) - np.array(b["parameters"])).max() < 1e-3


def test_launch_reports_failures_and_bad_arguments():
    with pytest.raises(ValueError):
        launch(0, 1, n_train=64)
    with pytest.raises(RuntimeError, match="exit status"):
        launch(2, 1, n_train=1000, global_batch=63)  # 63 does not split over 2 processes
