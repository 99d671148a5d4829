"""Recurrent networks in plain PyTorch: builders, one fit path, the adding problem,
gradients through time, and saving/reloading.

Why plain PyTorch and not Keras here: the chapter on RNNs and LSTMs measures
gradients with respect to every time step and sets the LSTM's forget-gate bias
by hand; both are a few lines on ``torch.nn.RNN``/``torch.nn.LSTM`` and awkward
through Keras. Everything a notebook needs is here, so the chapter shows model
definitions and results, not training loops.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .models import load_checkpoint, save_checkpoint

CELLS = ("rnn", "lstm", "gru")
THREADS = 1  # torch threads used by this module's loops (see :func:`torch_threads`)


class torch_threads:
    """Context manager: run torch with ``n`` intra-op threads, then restore the previous count.

    The recurrent models here are small (hidden sizes of 32-64), so each step is a
    handful of tiny matrix products. Measured on the book's 2-core machine while
    another process was busy, one epoch of the adding problem took about 6 s with one
    thread and about 100 s with two: the threads spent their time waiting for each
    other. One thread is also the same on every machine, which keeps results
    reproducible.
    """

    def __init__(self, n: int = THREADS):
        if n < 1:
            raise ValueError(f"thread count must be at least 1, got {n}")
        self.n = n

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)
        return False


def adding_problem(n: int, length: int, seed: int = 0):
    """The adding problem of Hochreiter & Schmidhuber (1997): a long-range dependency.

    Each sequence has ``length`` steps with two features: a random number in [0, 1]
    and a marker that is 1 at exactly two steps (one in the first half, one in the
    second half) and 0 elsewhere. The target is the sum of the two marked numbers.
    Predicting the constant 1 gives a mean squared error of 1/6 ≈ 0.167, the
    baseline a model must beat. Returns ``(x, y)`` float32 arrays of shapes
    ``(n, length, 2)`` and ``(n,)``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if length < 2:
        raise ValueError(f"length must be at least 2, got {length}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    marks = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return np.stack([values, marks], axis=-1), y.astype(np.float32)


ADDING_BASELINE_MSE = 1.0 / 6.0  # variance of the sum of two independent U(0, 1) numbers


def _module_class():
    import torch
    from torch import nn

    class RecurrentNet(nn.Module):
        """A one-layer recurrent network (RNN, LSTM or GRU) whose last hidden state feeds a linear head."""

        def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int):
            super().__init__()
            self.config = dict(cell=cell, input_size=input_size, hidden_size=hidden_size, output_size=output_size)
            kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            self.recurrent = kind(input_size, hidden_size, batch_first=True)
            self.head = nn.Linear(hidden_size, output_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            states, _ = self.recurrent(x)
            out = self.head(states[:, -1])
            return out.squeeze(-1) if out.shape[-1] == 1 else out

    return RecurrentNet


def build_recurrent(cell: str, input_size: int, hidden_size: int, output_size: int = 1,
                    forget_bias: float | None = None, seed: int | None = None):
    """Build a one-layer ``cell`` network (``"rnn"``, ``"lstm"`` or ``"gru"``) with a linear head.

    The plain RNN uses tanh. For an LSTM, ``forget_bias`` sets the forget gate's
    total bias (PyTorch keeps two bias vectors; the value goes into one, the other
    part is zeroed); ``None`` keeps PyTorch's default small random bias. With
    ``output_size == 1`` the model returns one number per sequence (regression),
    otherwise one row of logits.
    """
    import torch

    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    if min(input_size, hidden_size, output_size) < 1:
        raise ValueError("input_size, hidden_size and output_size must be positive")
    if forget_bias is not None and cell != "lstm":
        raise ValueError("forget_bias applies to an LSTM only")
    if seed is not None:
        torch.manual_seed(seed)
    model = _module_class()(cell, input_size, hidden_size, output_size)
    if forget_bias is not None:
        set_forget_bias(model, forget_bias)
    model.config["forget_bias"] = forget_bias
    return model


def set_forget_bias(model, value: float) -> None:
    """Set the forget-gate bias of every LSTM layer in ``model`` to ``value`` (gate order i, f, g, o)."""
    import torch

    lstms = [m for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    if not lstms:
        raise ValueError("the model has no LSTM layer")
    with torch.no_grad():
        for lstm in lstms:
            h = lstm.hidden_size
            for name, p in lstm.named_parameters():
                if name.startswith("bias_ih"):
                    p[h:2 * h] = value
                elif name.startswith("bias_hh"):
                    p[h:2 * h] = 0.0


def forget_bias(model) -> np.ndarray:
    """The total forget-gate bias (both PyTorch bias vectors added) of the first LSTM layer."""
    import torch

    lstm = next((m for m in model.modules() if isinstance(m, torch.nn.LSTM)), None)
    if lstm is None:
        raise ValueError("the model has no LSTM layer")
    h = lstm.hidden_size
    return (lstm.bias_ih_l0[h:2 * h] + lstm.bias_hh_l0[h:2 * h]).detach().numpy().copy()


def count_parameters(model) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _batches(n: int, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def predict(model, x, batch_size: int = 1024) -> np.ndarray:
    """Model outputs for ``x`` (a NumPy array), in evaluation mode and without gradients."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), torch_threads():
        for idx in _batches(len(x), batch_size, None):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[idx]))).numpy())
    return np.concatenate(out)


def evaluate(model, x, y, task: str) -> dict[str, float]:
    """Loss on held-out data: MSE for ``task="regression"``; cross-entropy and accuracy for ``"classification"``."""
    import torch
    import torch.nn.functional as F

    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} targets")
    out = torch.from_numpy(predict(model, x))
    if task == "regression":
        return {"loss": float(F.mse_loss(out, torch.from_numpy(np.asarray(y, np.float32))))}
    target = torch.from_numpy(np.asarray(y, np.int64))
    return {"loss": float(F.cross_entropy(out, target)), "accuracy": float((out.argmax(1) == target).float().mean())}


def fit(model, train, val, *, task: str, epochs: int, batch_size: int, learning_rate: float = 1e-3,
        clip_norm: float | None = 1.0, seed: int = 0, evals_per_epoch: int = 1, progress: bool = True,
        label: str = ""):
    """The one training loop for torch models in the book: Adam, shuffled mini-batches,
    optional gradient-norm clipping, validation ``evals_per_epoch`` times per epoch.
    Runs with :data:`THREADS` torch threads (see :class:`torch_threads`).

    ``train`` and ``val`` are ``(x, y)`` NumPy pairs (the validation set only
    monitors; never pass the test set). Progress is a tqdm bar on stderr and one
    summary line per epoch on stdout with metrics only (deterministic, so nbval
    can compare it). Returns a DataFrame with one row per evaluation: ``epoch``
    (fractional), ``step``, ``loss`` (mean training loss since the last row),
    ``val_loss`` and, for classification, ``val_accuracy``.
    """
    import pandas as pd
    import torch

    (x, y), (xv, yv) = train, val
    if len(x) != len(y) or len(xv) != len(yv):
        raise ValueError("inputs and targets differ in length")
    if epochs < 1 or batch_size < 1 or evals_per_epoch < 1:
        raise ValueError("epochs, batch_size and evals_per_epoch must be positive")
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps = -(-len(x) // batch_size)
    marks = {int(round(steps * k / evals_per_epoch)) for k in range(1, evals_per_epoch + 1)}
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.asarray(y, np.float32 if task == "regression" else np.int64))
    with torch_threads():
        rows = _fit_loop(model, opt, xt, yt, (xv, yv), task, epochs, batch_size, clip_norm, rng, steps, marks,
                         progress, label)
    return pd.DataFrame(rows)


def _fit_loop(model, opt, xt, yt, val, task, epochs, batch_size, clip_norm, rng, steps, marks, progress, label):
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    xv, yv = val
    rows, running, seen, step = [], 0.0, 0, 0
    for epoch in range(epochs):
        bar = tqdm(total=steps, desc=f"{label + ' ' if label else ''}epoch {epoch + 1}/{epochs}", unit="batch",
                   mininterval=2.0, file=sys.stderr, disable=not progress)
        for i, idx in enumerate(_batches(len(xt), batch_size, rng), start=1):
            model.train()
            idx = torch.from_numpy(idx)
            out = model(xt[idx])
            loss = F.mse_loss(out, yt[idx]) if task == "regression" else F.cross_entropy(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
            running, seen, step = running + loss.item(), seen + 1, step + 1
            bar.update(1)
            if i in marks:
                metrics = evaluate(model, xv, yv, task)
                rows.append({"epoch": epoch + i / steps, "step": step, "loss": running / seen,
                             **{f"val_{k}": v for k, v in metrics.items()}})
                running, seen = 0.0, 0
        bar.close()
        if progress:
            last = rows[-1]
            shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k not in ("epoch", "step"))
            print(f"{label + ': ' if label else ''}epoch {epoch + 1}/{epochs}: {shown}", flush=True)
    return rows


def gradient_through_time(model, x, y, task: str = "regression") -> np.ndarray:
    """How strongly the loss depends on each time step: ``‖∂L/∂x_t‖`` averaged over the batch.

    The loss is computed on the last step's output, so the gradient reaching step
    ``t`` has travelled back through ``T − t`` recurrent steps; with vanishing
    gradients it shrinks geometrically towards early steps. Returns an array of
    length ``T`` (step 0 first). Computed in float64 on a copy of the model, so
    gradients far below float32's range (1e-38) are still measured, not rounded to 0.
    """
    import copy

    import torch
    import torch.nn.functional as F

    x = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    if x.ndim != 3:
        raise ValueError(f"expected inputs of shape (batch, time, features), got {tuple(x.shape)}")
    probe = copy.deepcopy(model).double().eval()
    with torch_threads():
        out = probe(x)
    if task == "regression":
        loss = F.mse_loss(out, torch.from_numpy(np.asarray(y, np.float64)), reduction="sum")
    elif task == "classification":
        loss = F.cross_entropy(out, torch.from_numpy(np.asarray(y, np.int64)), reduction="sum")
    else:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    with torch_threads():
        (grad,) = torch.autograd.grad(loss, x)
    return grad.norm(dim=2).mean(dim=0).numpy()


def gradient_decay(model_factory, lengths, n: int = 64, seed: int = 0) -> "pd.DataFrame":  # noqa: F821
    """``‖∂L/∂x_first‖ / ‖∂L/∂x_last‖`` on adding-problem sequences of each length.

    ``model_factory()`` returns the model to probe (called once; the same model
    serves every length). A ratio near 1 means early steps still influence the
    loss; a ratio of 1e-10 means they effectively do not. Returns a DataFrame with
    columns ``length``, ``first``, ``last``, ``ratio``.
    """
    import pandas as pd

    if not lengths:
        raise ValueError("give at least one sequence length")
    model = model_factory()
    rows = []
    for length in lengths:
        x, y = adding_problem(n, int(length), seed=seed)
        g = gradient_through_time(model, x, y)
        rows.append({"length": int(length), "first": float(g[0]), "last": float(g[-1]),
                     "ratio": float(g[0] / g[-1]) if g[-1] > 0 else float("nan")})
    return pd.DataFrame(rows)


def forget_gate_values(model, x) -> np.ndarray:
    """The forget-gate activations ``f_t`` of the model's first LSTM layer on inputs ``x``.

    Recomputes the LSTM step by step from its weights (gate order i, f, g, o, as in
    ``torch.nn.LSTM``) and returns an array of shape ``(batch, time, hidden)``. A value
    near 1 keeps the cell state (and its gradient) unchanged; near 0 forgets it.
    """
    import torch

    lstm = next((m for m in model.modules() if isinstance(m, torch.nn.LSTM)), None)
    if lstm is None:
        raise ValueError("the model has no LSTM layer")
    x = torch.from_numpy(np.asarray(x, np.float32))
    if x.ndim != 3:
        raise ValueError(f"expected inputs of shape (batch, time, features), got {tuple(x.shape)}")
    n, h = x.shape[0], lstm.hidden_size
    hs, cs, gates = torch.zeros(n, h), torch.zeros(n, h), []
    with torch.no_grad(), torch_threads():
        for t in range(x.shape[1]):
            z = x[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + hs @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
            i, f, g, o = z.chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            cs = f * cs + i * g
            hs = o * torch.tanh(cs)
            gates.append(f)
    return torch.stack(gates, dim=1).numpy()


def mnist_rows(images: np.ndarray) -> np.ndarray:
    """MNIST as sequences: each 28×28 uint8 image becomes 28 steps of 28 pixels in [0, 1] (top row first)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, height, width), got {images.shape} {images.dtype}")
    return images.astype(np.float32) / 255.0


def save_model(model, path) -> Path:
    """Save a model built by :func:`build_recurrent`: weights and the settings needed to rebuild it."""
    if not hasattr(model, "config"):
        raise ValueError("only models built by build_recurrent can be saved this way")
    return save_checkpoint(path, describe=model.config, config=dict(model.config), state=model.state_dict())


def load_model(path):
    """Rebuild a model saved by :func:`save_model` (weights only; no pickled code is loaded)."""
    saved = load_checkpoint(path, "save a model first with sequences.save_model")
    cfg = dict(saved["config"])
    fb = cfg.pop("forget_bias", None)
    model = build_recurrent(cfg["cell"], cfg["input_size"], cfg["hidden_size"], cfg["output_size"])
    model.config["forget_bias"] = fb
    model.load_state_dict(saved["state"])
    model.eval()
    return model

