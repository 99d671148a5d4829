"""Support package for the executable book *Large Models in Practice*.

One flat module per concern:

* :mod:`bigmodel_utils.devices`  – device choice, seeds, threads, environment report
* :mod:`bigmodel_utils.profiles` – named execution profiles (``smoke``, ``full``)
* :mod:`bigmodel_utils.data`     – offline, checksum-verified data sets
* :mod:`bigmodel_utils.models`   – model builders and a guarded prediction function
* :mod:`bigmodel_utils.training` – fitting and evaluation helpers
* :mod:`bigmodel_utils.plots`    – accessible matplotlib figures
* :mod:`bigmodel_utils.kernels`  – the CPU and GPU Jupyter kernels
* :mod:`bigmodel_utils.run`      – the papermill runner and its execution report

Keras is never imported here: the backend and the device must be fixed (by
:func:`setup_notebook`) before the first ``import keras``.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from .devices import (  # noqa: E402
    DeviceUnavailableError,
    NotebookSession,
    environment_report,
    resolve_device,
    seed_everything,
    setup_notebook,
)
from .profiles import PROFILES, Profile, UnknownProfileError, get_profile  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "DeviceUnavailableError",
    "NotebookSession",
    "PROFILES",
    "Profile",
    "UnknownProfileError",
    "environment_report",
    "get_profile",
    "resolve_device",
    "seed_everything",
    "setup_notebook",
]
