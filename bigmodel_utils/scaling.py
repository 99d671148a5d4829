"""Scaling laws at laptop scale: train one model family at several sizes, count its
parameters and training compute, and fit a power law to test loss against size.

Why this module exists: the article forecasts that large models will keep growing
(section 8.2) without saying what growing buys. The empirical answer is the
scaling-law literature (Kaplan et al. 2020; Hoffmann et al. 2022): test loss falls
as a power law in parameters, data and compute. The chapter measures such a curve
for the book's character-level Transformer (:mod:`bigmodel_utils.transformer`),
and this module holds the reusable, tested parts: parameter and FLOP counts, the
power-law fit, and the loop that trains the family on one data and token budget.

Conventions (as in Kaplan et al. 2020):

* ``N`` is the number of **non-embedding** parameters: everything except the
  token embedding, the positional table and the output head (in GPT-2 the head is
  tied to the embedding, so it is excluded there too).
* Training compute is estimated as ``C ≈ 6 · N · D`` floating-point operations for
  ``D`` training tokens: a forward pass costs about 2 operations (one multiply, one
  add) per parameter per token, the backward pass about twice that. The estimate
  ignores the output head and the attention scores (QKᵀ and the weighted sum of
  values), which at laptop scale are *not* small: :func:`matmul_flops_per_token`
  counts them exactly and the chapter compares the two.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

#: Published exponents the chapter compares with. Loss is in nats per token of each paper's own
#: tokeniser and data set, so only the exponents, not the losses, can be compared at all.
PUBLISHED_EXPONENTS = {
    "kaplan2020_alpha_N": dict(value=0.076, form="L(N) = (N_c / N)^α_N, N_c ≈ 8.8e13, no irreducible term",
                               source="kaplan2020scaling"),
    "kaplan2020_alpha_D": dict(value=0.095, form="L(D) = (D_c / D)^α_D, D_c ≈ 5.4e13 tokens",
                               source="kaplan2020scaling"),
    "kaplan2020_alpha_C": dict(value=0.050, form="L(C_min) = (C_c / C_min)^α_C (compute-efficient frontier)",
                               source="kaplan2020scaling"),
    "hoffmann2022_alpha": dict(value=0.34, form="L(N, D) = E + A / N^α + B / D^β, E = 1.69, A = 406.4",
                               source="hoffmann2022chinchilla"),
    "hoffmann2022_beta": dict(value=0.28, form="L(N, D) = E + A / N^α + B / D^β, B = 410.7",
                              source="hoffmann2022chinchilla"),
}

#: Tokens per parameter of a compute-optimal model according to Hoffmann et al. (2022): about 20
#: (Chinchilla: 70 B parameters, 1.4 T tokens).
CHINCHILLA_TOKENS_PER_PARAMETER = 20.0

_EMBEDDING_PREFIXES = ("embed.", "pos", "head.")


# --------------------------------------------------------------------------- counting


def non_embedding_parameters(model) -> int:
    """Trainable parameters of a :class:`~bigmodel_utils.transformer.CharTransformer` outside the token
    embedding, the positional table and the output head (Kaplan et al.'s ``N``)."""
    if not hasattr(model, "named_parameters"):
        raise TypeError("model must be a torch module (build it with transformer.build_char_transformer)")
    return int(sum(p.numel() for name, p in model.named_parameters()
                   if p.requires_grad and not name.startswith(_EMBEDDING_PREFIXES)))


def transformer_parameters(d_model: int, layers: int) -> int:
    """Non-embedding parameters of the book's pre-norm decoder, in closed form.

    Per block: Q, K, V and output projections ``4d² + 4d``, a 4× MLP ``8d² + 5d``, two
    LayerNorms ``4d``, so ``12d² + 13d``; plus the final LayerNorm ``2d``.
    """
    if d_model < 1 or layers < 1:
        raise ValueError(f"d_model and layers must be positive, got {d_model} and {layers}")
    return layers * (12 * d_model**2 + 13 * d_model) + 2 * d_model


def training_flops(n_params, tokens):
    """The standard estimate ``C = 6 · N · D`` of training floating-point operations.

    ``n_params`` (non-embedding parameters) and ``tokens`` may be numbers or arrays.
    """
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    if (n <= 0).any() or (d < 0).any() or not (np.isfinite(n).all() and np.isfinite(d).all()):
        raise ValueError("n_params must be positive and tokens non-negative (finite numbers)")
    c = 6.0 * n * d
    return float(c) if c.ndim == 0 else c


def matmul_flops_per_token(d_model: int, layers: int, context: int, vocab_size: int,
                           training: bool = True) -> float:
    """Exact matrix-multiply operations per token of the book's Transformer (2 per multiply–add).

    Forward: ``2·12·L·d²`` for the block weights, ``2·d·V`` for the output head and
    ``4·L·T·d`` for the attention scores and the weighted values (the model computes
    the full ``T × T`` score matrix and masks it afterwards). Training adds a backward
    pass of twice the forward cost, so the total is 3× the forward count. Biases,
    LayerNorms, softmax and GELU are not matrix products and are not counted (they
    are a few per cent).
    """
    if min(d_model, layers, context, vocab_size) < 1:
        raise ValueError("d_model, layers, context and vocab_size must be positive")
    forward = 2 * 12 * layers * d_model**2 + 2 * d_model * vocab_size + 4 * layers * context * d_model
    return float(3 * forward if training else forward)


def measure_training_flops(model, batch_size: int = 2) -> float:
    """Matrix-multiply operations of one forward and backward pass per token, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on a random batch of full-context windows."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg["vocab_size"], (batch_size, cfg["context"] + 1), generator=gen)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = F.cross_entropy(model(x[:, :-1]).transpose(1, 2), x[:, 1:])
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / (batch_size * cfg["context"])


# --------------------------------------------------------------------------- power-law fit


@dataclass(frozen=True)
class PowerLawFit:
    """``L(N) = a · N^(−alpha) + c``; ``c`` is 0 for a fit in log space without an offset.

    ``r2`` is the coefficient of determination of the fit on the fitted scale (log L
    for ``offset=False``, L for ``offset=True``); ``method`` names the fit.
    """

    a: float
    alpha: float
    c: float
    r2: float
    method: str

    def predict(self, n):
        n = np.asarray(n, dtype=float)
        return self.a * n ** (-self.alpha) + self.c


def _check_xy(n, loss, min_points):
    x = np.asarray(n, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"sizes and losses must be 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < min_points:
        raise ValueError(f"need at least {min_points} (size, loss) points for this fit, got {len(x)}; "
                         "train more model sizes")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("sizes and losses must be finite (a diverged run gives inf or nan: drop or rerun it)")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("sizes and losses must be positive for a power law (log scale)")
    if len(np.unique(x)) < min_points:
        raise ValueError(f"need at least {min_points} distinct sizes")
    return x, y


def fit_power_law(n, loss, offset: bool = False) -> PowerLawFit:
    """Fit ``loss ≈ a · n^(−α)`` (+ ``c`` when ``offset``) to measured points.

    Without ``offset`` (Kaplan et al.'s form), a least-squares line through
    ``(log n, log loss)``: slope ``−α``; at least 3 points. With ``offset`` (the form of
    Hoffmann et al. at a fixed data budget, where ``c`` absorbs the irreducible loss and
    the data-limited term), a nonlinear least-squares fit in loss space with
    ``0 ≤ c < min(loss)`` and ``α ≥ 0``; at least 4 points, because three parameters
    through three points always fit exactly.
    """
    x, y = _check_xy(n, loss, 4 if offset else 3)
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    if not offset:
        pred = intercept + slope * lx
        r2 = 1 - np.sum((ly - pred) ** 2) / np.sum((ly - ly.mean()) ** 2)
        return PowerLawFit(a=float(np.exp(intercept)), alpha=float(-slope), c=0.0, r2=float(r2), method="log-linear")

    from scipy.optimize import curve_fit

    x0 = x.min()  # fit in units of the smallest size, so a stays of order one

    def model(xx, a, alpha, c):
        return a * (xx / x0) ** (-alpha) + c

    best = None
    for c_start in (0.0, 0.5 * y.min(), 0.9 * y.min()):
        a_start = max(y.max() - c_start, 1e-6)
        try:
            p, _ = curve_fit(model, x, y, p0=(a_start, max(-slope, 0.05), c_start),
                             bounds=([0, 0, 0], [np.inf, 5.0, y.min() * (1 - 1e-9)]), maxfev=20_000)
        except RuntimeError:
            continue
        sse = float(np.sum((model(x, *p) - y) ** 2))
        if best is None or sse < best[1]:
            best = (p, sse)
    if best is None:
        raise RuntimeError("the power law with an offset did not converge; use offset=False")
    (a, alpha, c), sse = best
    r2 = 1 - sse / float(np.sum((y - y.mean()) ** 2))
    return PowerLawFit(a=float(a * x0**alpha), alpha=float(alpha), c=float(c), r2=float(r2), method="offset")


def local_exponents(n, loss):
    """Slopes ``−Δlog L / Δlog N`` between consecutive sizes (sorted by size): the exponent a power law
    would have on each stretch. Equal values mean a straight line in log–log space; values that grow
    with ``N`` mean the curve steepens (bends down), values that shrink mean it flattens towards a floor."""
    x, y = _check_xy(n, loss, 2)
    order = np.argsort(x)
    lx, ly = np.log(x[order]), np.log(y[order])
    return -np.diff(ly) / np.diff(lx)


def loss_ratio_per_doubling(alpha: float) -> float:
    """Factor by which the (reducible) loss shrinks when the size doubles: ``2^(−α)``."""
    if not math.isfinite(alpha):
        raise ValueError("alpha must be finite")
    return 2.0 ** (-alpha)


# --------------------------------------------------------------------------- the experiment


def train_family(widths, vocab_size: int, train_ids, val_ids, test_ids, *, layers: int = 2, heads: int = 4,
                 context: int = 64, batch_size: int = 32, steps: int = 300, learning_rate: float = 3e-3,
                 warmup: int = 30, eval_every: int = 25, seed: int = 0, progress: bool = True):
    """Train one :class:`CharTransformer` per width on the same text, token budget and schedule.

    Every model sees the same ``steps × batch_size × context`` training tokens in the
    same order (same seed), with one learning rate for all sizes. Returns
    ``(results, histories)``: ``results`` has one row per width (``d_model``,
    ``params`` = non-embedding N, ``total_params``, ``tokens``, ``flops_6ND``,
    ``flops_counted`` = exact matrix-multiply count, ``test_loss`` in nats per
    character from :func:`~bigmodel_utils.transformer.evaluate_lm` on ``test_ids``,
    ``seconds``); ``histories`` is one long DataFrame of the monitored validation
    loss along training with its compute (``flops_6ND``) so far.
    """
    import pandas as pd

    from . import transformer as tr

    widths = [int(w) for w in widths]
    if len(widths) < 1 or len(set(widths)) != len(widths) or min(widths) < 1:
        raise ValueError("widths must be distinct positive integers")
    bad = [w for w in widths if w % heads or w % 2]
    if bad:
        raise ValueError(f"widths {bad} are not even multiples of heads={heads}; choose widths divisible by both")
    tokens_per_step = batch_size * context
    rows, curves = [], []
    for w in widths:
        model = tr.build_char_transformer(vocab_size, d_model=w, heads=heads, layers=layers, context=context,
                                          seed=seed)
        n = non_embedding_parameters(model)
        start = time.perf_counter()
        hist = tr.fit_lm(model, train_ids, val_ids, steps=steps, batch_size=batch_size,
                         learning_rate=learning_rate, warmup=warmup, eval_every=eval_every, seed=seed,
                         progress=progress, label=f"d_model={w}")
        test_loss = tr.evaluate_lm(model, test_ids)
        seconds = time.perf_counter() - start
        tokens = steps * tokens_per_step
        rows.append(dict(d_model=w, params=n, total_params=tr.count_parameters(model), tokens=tokens,
                         flops_6ND=training_flops(n, tokens),
                         flops_counted=matmul_flops_per_token(w, layers, context, vocab_size) * tokens,
                         test_loss=test_loss, seconds=seconds))
        hist = hist.assign(d_model=w, params=n, tokens=hist.step * tokens_per_step)
        hist["flops_6ND"] = 6.0 * n * hist.tokens
        curves.append(hist)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def best_size_per_budget(histories, budgets):
    """For each compute budget (in ``flops_6ND``), the width whose validation loss, interpolated in
    log compute along its own training curve, is lowest; budgets a model has not reached skip it.

    Returns a DataFrame with ``budget``, ``best_d_model`` and ``best_val_loss``.
    """
    import pandas as pd

    budgets = np.asarray(budgets, dtype=float)
    if budgets.ndim != 1 or len(budgets) == 0 or (budgets <= 0).any():
        raise ValueError("budgets must be a non-empty 1-D array of positive numbers")
    need = {"d_model", "flops_6ND", "val_loss"}
    if not need <= set(histories.columns):
        raise ValueError(f"histories needs the columns {sorted(need)} (as returned by train_family)")
    rows = []
    for b in budgets:
        best = None
        for w, h in histories.groupby("d_model"):
            c, v = h.flops_6ND.to_numpy(), h.val_loss.to_numpy()
            if b < c.min() or b > c.max():
                continue
            loss = float(np.interp(np.log(b), np.log(c), v))
            if best is None or loss < best[1]:
                best = (int(w), loss)
        if best is not None:
            rows.append(dict(budget=float(b), best_d_model=best[0], best_val_loss=best[1]))
    return pd.DataFrame(rows, columns=["budget", "best_d_model", "best_val_loss"])
