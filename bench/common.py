"""Shared helpers of the benchmarks: machine description, SGEMM rate, result files."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "torch")
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))


def machine() -> str:
    from bigmodel_utils.run import machine_description

    return machine_description()


def sgemm_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best-of-``repeats`` float32 matrix-product rate in GFLOP/s (the machine's practical peak)."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def save(name: str, result: dict, results_dir: Path = RESULTS) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} | result
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def ratio_line(label: str, slow: float, fast: float, goal: float) -> str:
    r = slow / fast
    verdict = "goal met" if r >= goal else f"goal missed by a factor {goal / r:.2f}"
    return f"{label}: {r:.2f}x (goal >= {goal:g}x) -> {verdict}"
