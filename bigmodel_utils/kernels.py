"""The book's two Jupyter kernels.

``bigmodel-cpu`` hides every GPU (``CUDA_VISIBLE_DEVICES=""``), so results are the
CPU results whatever the machine. ``bigmodel-gpu`` asks for CUDA; on a machine
without one, the first cell of every chapter (``setup_notebook``) stops with a
message naming the CPU kernel. Both run Keras on the torch backend.

Usage: ``python -m bigmodel_utils.kernels install [--user | --prefix P] | list``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

KERNELS = {
    "cpu": {
        "name": "bigmodel-cpu",
        "display_name": "Python 3 (bigmodel, CPU)",
        "env": {"KERAS_BACKEND": "torch", "BIGMODEL_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""},
    },
    "gpu": {
        "name": "bigmodel-gpu",
        "display_name": "Python 3 (bigmodel, GPU)",
        "env": {"KERAS_BACKEND": "torch", "BIGMODEL_DEVICE": "cuda"},
    },
}


def kernel_name(kind: str) -> str:
    """Map ``cpu``/``gpu`` (or a full kernel name) to the kernelspec name."""
    for k, spec in KERNELS.items():
        if kind in (k, spec["name"]):
            return spec["name"]
    raise ValueError(f"unknown kernel {kind!r}; choose one of {', '.join(KERNELS)}")


def kernel_json(kind: str, python: str | None = None) -> dict:
    """The kernel.json of one kernel, launching this interpreter (the project's venv)."""
    spec = KERNELS[next(k for k, v in KERNELS.items() if kernel_name(kind) == v["name"])]
    return {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": spec["display_name"],
        "language": "python",
        "env": dict(spec["env"]),
        "metadata": {"debugger": True},
    }


def install(prefix: str | None = None, *, user: bool = False) -> list[str]:
    """Install both kernelspecs under ``prefix`` (default: the running environment), or with ``user``
    into the user's Jupyter folder, where every Jupyter client and VS Code finds them. Either way the
    kernels launch this interpreter, the one that has ``bigmodel_utils`` and the pinned stack."""
    from jupyter_client.kernelspec import KernelSpecManager

    if user and prefix:
        raise ValueError("choose --user or --prefix, not both")
    ksm = KernelSpecManager()
    paths = []
    for kind, spec in KERNELS.items():
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "kernel.json").write_text(json.dumps(kernel_json(kind), indent=1))
            where = {"user": True} if user else {"prefix": prefix or sys.prefix}
            paths.append(ksm.install_kernel_spec(d, spec["name"], **where))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "list"])
    parser.add_argument("--prefix", help="install under PREFIX/share/jupyter/kernels (default: this environment)")
    parser.add_argument("--user", action="store_true",
                        help="install for this user (~/.local/share/jupyter/kernels): visible to any Jupyter and VS Code")
    args = parser.parse_args(argv)
    if args.user and args.prefix:
        parser.error("choose --user or --prefix, not both")
    if args.command == "install":
        for p in install(args.prefix, user=args.user):
            print(f"installed kernel {Path(p).name} -> {p}")
    else:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
        for kind, spec in KERNELS.items():
            print(f"{spec['name']:14s} {'installed' if spec['name'] in specs else 'MISSING  '} {spec['display_name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
