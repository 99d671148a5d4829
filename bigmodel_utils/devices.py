"""Device choice, seeds, thread count and the one-line environment report.

Every chapter starts with :func:`setup_notebook`, so that all notebooks agree on
how the device is chosen (``auto | cpu | cuda``, or ``BIGMODEL_DEVICE``), on the
thread count (results on a CPU are bit-identical only for a fixed count) and on
seeding.
"""
from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .profiles import Profile, get_profile

DEVICES = ("auto", "cpu", "cuda")
DEVICE_ENV = "BIGMODEL_DEVICE"
THREADS_ENV = "BIGMODEL_THREADS"
DEFAULT_THREADS = 2
RUN_INFO_ENV = "BIGMODEL_RUN_INFO"  # set by the runner: where setup_notebook writes what it chose


class DeviceUnavailableError(RuntimeError):
    """Raised when a device is asked for that this machine does not have."""


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str | None = "auto") -> str:
    """Turn ``auto | cpu | cuda`` (or ``None``) into ``"cpu"`` or ``"cuda"``.

    ``auto`` (and ``None``) defer to the ``BIGMODEL_DEVICE`` environment variable
    (the Jupyter kernels set it), and otherwise pick CUDA when present.
    """
    from_kernel = requested is None or requested == "auto"
    if from_kernel:
        requested = os.environ.get(DEVICE_ENV, "auto") or "auto"
    requested = str(requested).strip().lower()
    if requested not in DEVICES:
        raise ValueError(
            f"unknown device {requested!r}; choose one of {', '.join(DEVICES)} "
            f"(as the 'device' parameter or the {DEVICE_ENV} environment variable)"
        )
    if requested == "cpu":
        return "cpu"
    has_cuda = _cuda_available()
    if requested == "cuda" and not has_cuda:
        if from_kernel:  # the GPU kernel asked (it sets BIGMODEL_DEVICE=cuda): only another kernel helps
            remedy = ("Remedy: switch to the CPU kernel 'Python 3 (bigmodel, CPU)' (bigmodel-cpu; JupyterLab: Kernel > "
                      "Change Kernel; runner: --kernel cpu), or run on a machine with a GPU.")
        else:
            remedy = ("Remedy: set device = \"auto\" (or \"cpu\") in the parameters cell, or run on a "
                      "machine with a GPU.")
        raise DeviceUnavailableError(
            "CUDA was requested but torch sees no GPU on this machine "
            f"(torch.cuda.is_available() is False; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r}). " + remedy
        )
    return "cuda" if has_cuda else "cpu"


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy, torch and Keras with one call; returns the seed."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        import keras

        keras.utils.set_random_seed(seed)
    return seed


def set_threads(n: int | None = None) -> int:
    """Fix torch's intra-op thread count (default ``BIGMODEL_THREADS`` or 2)."""
    import torch

    if n is None:
        n = int(os.environ.get(THREADS_ENV, DEFAULT_THREADS))
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    torch.set_num_threads(n)
    return torch.get_num_threads()


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def environment_info(device: str) -> dict[str, Any]:
    """Versions, device and threads as a dict (the runner stores it in its report)."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "keras": _version("keras"),
        "numpy": _version("numpy"),
        "device": device,
        "threads": torch.get_num_threads(),
        "keras_backend": os.environ.get("KERAS_BACKEND", "unset"),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def environment_report(device: str) -> str:
    """One line that every notebook prints first: versions, device, threads."""
    i = environment_info(device)
    gpu = f" ({i['gpu']})" if "gpu" in i else ""
    return (
        f"Environment: Python {i['python']} | torch {i['torch']} | keras {i['keras']} "
        f"(backend {i['keras_backend']}) | numpy {i['numpy']} | device {i['device']}{gpu} "
        f"| {i['threads']} CPU threads"
    )


@dataclass(frozen=True)
class NotebookSession:
    """What a chapter needs after setup: its profile, device and seed."""

    profile: Profile
    device: str
    seed: int


def setup_notebook(profile: str = "full", device: str = "auto", seed: int = 0) -> NotebookSession:
    """First call of every chapter: validate parameters, fix device, threads and seeds, print the report."""
    prof = get_profile(profile)
    dev = resolve_device(device)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if "keras" not in sys.modules:
        os.environ["KERAS_TORCH_DEVICE"] = dev
    if dev == "cuda":
        import torch

        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    set_threads()
    seed_everything(seed)
    print(environment_report(dev))
    print(f"Profile {prof.name!r}: {prof.description}; seed {seed}")
    info_path = os.environ.get(RUN_INFO_ENV)
    if info_path:
        import json

        with open(info_path, "w", encoding="utf-8") as fh:
            json.dump(environment_info(dev) | {"profile": prof.name, "seed": seed}, fh)
    return NotebookSession(profile=prof, device=dev, seed=seed)
