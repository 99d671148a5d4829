"""Making a trained model smaller and faster: quantisation, pruning, ONNX export.

Everything here works on the plain-PyTorch copy of the article's CNN
(:class:`~bigmodel_utils.fastpath.ArticleCNN`). :func:`trained_fast_cnn` trains it
once with the fast recipe of :mod:`bigmodel_utils.fastpath` and caches the weights,
so the efficiency and interpretability chapters share one model.

Measuring honestly:

* size is the number of bytes of a serialised file (``torch.save`` of the state
  dict, or the ``.onnx`` file), not a parameter count times a nominal width;
* latency is the **median** of many single-image calls after a warm-up; the
  absolute numbers depend on the machine and its load, ratios measured in one run
  are more stable;
* unstructured pruning sets weights to zero but keeps dense tensors, so without
  sparse kernels it changes neither the file size nor the speed.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .fastpath import ArticleCNN, accuracy, to_tensor, train_fast
from .sequences import torch_threads


def _check_n_train(n_train: int | None) -> int:
    if n_train is not None and not 0 < n_train <= 60_000:
        raise ValueError(f"n_train must be between 1 and 60000 (or None for all), got {n_train}")
    return n_train or 60_000


def trained_fast_cnn(*, epochs: float = 2, n_train: int | None = None, seed: int = 0, use_cache: bool = True,
                     ) -> ArticleCNN:
    """The article's CNN (plain PyTorch) trained by :func:`fastpath.train_fast` on the first
    ``n_train`` MNIST training images, in eval mode.

    The weights are cached under :func:`models.cache_dir` keyed by the settings, so
    chapters that need the same model train it once. Training is seeded; with the
    same thread count a cached and a fresh model are identical. Nothing is printed,
    so an executed notebook looks the same whether the model was trained or loaded; a
    damaged cache file (checked by its SHA-256 sidecar) is reported on stderr and retrained.
    """
    from .data import load_cached, load_mnist, save_cached
    from .models import cache_dir

    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    n = _check_n_train(n_train)
    path = cache_dir() / f"fast_cnn_e{epochs:g}_n{n}_s{seed}.pt"
    torch.manual_seed(seed)
    model = ArticleCNN()

    def load(p):  # into a copy: a file that fails half-way must not touch the freshly seeded model
        loaded = copy.deepcopy(model)
        loaded.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        return loaded

    cached = load_cached(path, load) if use_cache else None
    if cached is not None:
        model = cached
    else:
        (x, y), (xt, yt) = load_mnist()
        xs, ys = to_tensor(x[:n]), torch.from_numpy(y[:n].astype(np.int64))
        xe, ye = to_tensor(xt[:500]), torch.from_numpy(yt[:500].astype(np.int64))
        batch = min(256, max(16, n // 100))  # ≥ 100 steps per epoch on small subsets
        train_fast(model, xs, ys, xe, ye, epochs=epochs, batch_size=batch, evals_per_epoch=1, seed=seed,
                   progress=False)
        if use_cache:
            save_cached(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return model.eval()


def mnist_tensors(n_test: int | None = None, n_calib: int = 512):
    """``(x_test, y_test, x_calib)`` as tensors: the first ``n_test`` test images (all by
    default) with labels, and the *last* ``n_calib`` training images for calibration."""
    from .data import load_mnist

    if n_test is not None and not 0 < n_test <= 10_000:
        raise ValueError(f"n_test must be between 1 and 10000 (or None), got {n_test}")
    if not 0 < n_calib <= 60_000:
        raise ValueError(f"n_calib must be between 1 and 60000, got {n_calib}")
    (x, _), (xt, yt) = load_mnist()
    n_test = n_test or 10_000
    return to_tensor(xt[:n_test]), torch.from_numpy(yt[:n_test].astype(np.int64)), to_tensor(x[-n_calib:])


# ----------------------------------------------------------------------------- size


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` — what a checkpoint file would take on disk."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


def compressed_bytes(model: nn.Module, level: int = 9) -> int:
    """Bytes of the checkpoint after zlib compression — runs of zeros left by pruning compress well."""
    import zlib

    if not 0 <= level <= 9:
        raise ValueError(f"zlib level must be 0..9, got {level}")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(zlib.compress(buf.getvalue(), level))


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the weights of all Conv2d and Linear layers."""
    ws = [m.weight.detach() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not ws:
        raise ValueError("the model has no Conv2d or Linear layer with a float weight")
    return float(sum((w == 0).sum().item() for w in ws) / sum(w.numel() for w in ws))


# ----------------------------------------------------------------------------- quantisation


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of the ``nn.Linear`` layers (weights stored as int8,
    activations quantised on the fly). Convolutions stay float32: PyTorch's dynamic
    mode does not cover them. Returns a new model; ``model`` is unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def quantize_static_int8(model: ArticleCNN, x_calib: torch.Tensor, backend: str = "x86") -> nn.Module:
    """Post-training *static* int8 quantisation (FX graph mode) of convolutions and dense
    layers, calibrated on ``x_calib`` (a few hundred training images suffice).

    The FX tracer cannot follow the shape check in ``ArticleCNN.forward``, so the
    traced graph is ``features`` followed by ``head`` (the same function).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not isinstance(model, ArticleCNN):
        raise TypeError("quantize_static_int8 expects an ArticleCNN (it traces features + head)")
    if x_calib.ndim != 4 or len(x_calib) == 0:
        raise ValueError(f"x_calib must be a non-empty (N, 1, 28, 28) batch, got {tuple(x_calib.shape)}")
    plain = nn.Sequential(copy.deepcopy(model.features), copy.deepcopy(model.head)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(plain, get_default_qconfig_mapping(backend), (x_calib[:1],))
        with torch.no_grad():
            for i in range(0, len(x_calib), 256):
                prepared(x_calib[i : i + 256])
        return convert_fx(prepared)


def quantized_layers(model: nn.Module) -> list[tuple[str, str]]:
    """``(name, class name)`` of every layer that holds int8 weights after quantisation."""
    out = []
    for name, m in model.named_modules():
        mod = type(m).__module__
        if "quantized" in mod and hasattr(m, "weight") and callable(getattr(m, "weight")):
            out.append((name, ("dynamic " if "dynamic" in mod else "") + "int8 " + type(m).__name__))
    return out


# ----------------------------------------------------------------------------- pruning


def _prunable(model: nn.Module):
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_global(model: nn.Module, amount: float) -> nn.Module:
    """Global unstructured magnitude pruning: zero the ``amount`` fraction of smallest-|w|
    weights over all conv and dense layers together (biases kept). Returns a new model
    with the zeros made permanent (plain dense tensors)."""
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    params = _prunable(pruned)
    if not params:
        raise ValueError("the model has no Conv2d or Linear layer to prune")
    if amount > 0:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        for m, n in params:
            prune.remove(m, n)
    return pruned.eval()


def fine_tune_masked(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """A short Adam fine-tune that keeps pruned weights at zero (the zero pattern of
    each weight is its mask, re-applied after every step). Returns a new model."""
    if len(x) != len(y) or len(x) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} images with as many labels, got {len(x)}/{len(y)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    tuned = copy.deepcopy(model).train()
    masks = [(m.weight, (m.weight != 0).float()) for m, _ in _prunable(tuned)]
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss_fn(tuned(x[idx]), y[idx]).backward()
        opt.step()
        with torch.no_grad():
            for w, mask in masks:
                w.mul_(mask)
    return tuned.eval()


def sparsity_curve(model: nn.Module, amounts, x_test, y_test, x_tune=None, y_tune=None, *, steps: int = 100,
                   batch_size: int = 128, seed: int = 0):
    """Test accuracy after global magnitude pruning at each sparsity in ``amounts``,
    and (if tuning data are given) after a masked fine-tune of ``steps`` steps.
    Returns a DataFrame with columns sparsity, accuracy_pruned, accuracy_tuned."""
    import pandas as pd

    rows = []
    for a in amounts:
        pruned = prune_global(model, a)
        row = {"sparsity": weight_sparsity(pruned), "accuracy_pruned": accuracy(pruned, x_test, y_test)}
        if x_tune is not None:
            tuned = fine_tune_masked(pruned, x_tune, y_tune, steps=steps, batch_size=batch_size, seed=seed)
            row["accuracy_tuned"] = accuracy(tuned, x_test, y_test)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- ONNX


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Export to ONNX (TorchScript-based exporter, batch axis dynamic); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(model).eval(), (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    return path


class OnnxModel:
    """An ONNX Runtime session (one thread, deterministic) called like a torch model."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"no ONNX file at {path}; create it with export_onnx(model, path)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def eval(self):
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])


# ----------------------------------------------------------------------------- latency and comparison


def median_latency_ms(fn: Callable, x: torch.Tensor, *, repeats: int = 200, warmup: int = 20,
                      threads: int | None = 1) -> float:
    """Median wall time in milliseconds of ``fn(x)`` over ``repeats`` calls after ``warmup``.

    By default PyTorch runs on **one** thread while timing (ONNX Runtime sessions from
    :class:`OnnxModel` use one too): for a batch of one image, extra threads mostly add
    synchronisation, and on a shared, busy machine they can slow a call down a
    hundredfold. ``threads=None`` keeps the current setting.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be ≥ 1 and warmup ≥ 0")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be ≥ 1 or None, got {threads}")
    times = []
    with torch_threads(threads) if threads is not None else contextlib.nullcontext(), torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            fn(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


@dataclass
class Variant:
    """One deployable form of the model: a callable, its size on disk, and a label."""

    name: str
    model: Callable
    size_bytes: int


def compare_variants(variants: list[Variant], x_test, y_test, *, repeats: int = 200, rounds: int = 3):
    """Size, test accuracy and batch-1 median latency of each variant, as a DataFrame.

    Latency is measured in ``rounds`` interleaved rounds (variant A, B, C, A, B, C, …)
    and the median of the per-round medians is reported, so that load changes on a
    shared machine hit all variants alike. Columns ``size_ratio`` and ``speedup`` are
    relative to the first variant.
    """
    import pandas as pd

    if not variants:
        raise ValueError("give at least one Variant")
    one = x_test[:1]
    lat = {v.name: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            lat[v.name].append(median_latency_ms(v.model, one, repeats=repeats))
    rows = []
    for v in variants:
        with torch.inference_mode():
            correct = sum(int((v.model(x_test[i : i + 1000]).argmax(1) == y_test[i : i + 1000]).sum())
                          for i in range(0, len(x_test), 1000))
        acc = correct / len(x_test)
        rows.append({"variant": v.name, "size_bytes": v.size_bytes, "test_accuracy": acc,
                     "latency_ms": statistics.median(lat[v.name])})
    df = pd.DataFrame(rows)
    df["size_ratio"] = df.size_bytes / df.size_bytes.iloc[0]
    df["speedup"] = df.latency_ms.iloc[0] / df.latency_ms
    return df
