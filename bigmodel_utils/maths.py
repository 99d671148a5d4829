"""Reference implementations for checking the article's formulas numerically.

Each function is written the slow, obvious way, straight from the formula, so
that the mathematics chapter can compare it with an independent computation
(autograd, SymPy or PyTorch's own operators) and assert agreement.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Side length after a convolution or pooling: floor((n + 2p - d(k-1) - 1) / s) + 1."""
    if min(n, kernel, stride, dilation) < 1 or padding < 0:
        raise ValueError("n, kernel, stride and dilation must be positive and padding non-negative")
    out = (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"a {kernel}×{kernel} window does not fit in {n} (+{padding} padding)")
    return out


def conv2d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Valid 2-D convolution (cross-correlation) with stride 1, by its definition:

    ``Y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * X[n, c, i + u, j + v]``.
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"need x (N, C, H, W) and weight (O, C, kh, kw) with equal C; got {tuple(x.shape)}, {tuple(weight.shape)}")
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    out = torch.zeros(n, o, h - kh + 1, w - kw + 1, dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            patch = x[:, :, u : u + h - kh + 1, v : v + w - kw + 1]  # (N, C, H', W')
            out += torch.einsum("nchw,oc->nohw", patch, weight[:, :, u, v])
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 0:
        raise ValueError("softmax needs at least one axis of logits")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_grad(z: np.ndarray, y_one_hot: np.ndarray) -> np.ndarray:
    """Gradient of -sum_k y_k log softmax(z)_k with respect to the logits z: softmax(z) - y."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y_one_hot, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"logits {z.shape} and one-hot labels {y.shape} differ in shape")
    return softmax(z) - y


def gaussian_kl_to_standard(mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL( N(mu, diag exp(log_var)) || N(0, I) ) = 1/2 sum(exp(log_var) + mu^2 - 1 - log_var), per row."""
    mu, log_var = np.asarray(mu, dtype=np.float64), np.asarray(log_var, dtype=np.float64)
    if mu.shape != log_var.shape:
        raise ValueError(f"mu {mu.shape} and log_var {log_var.shape} differ in shape")
    return 0.5 * np.sum(np.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)


def gaussian_kl_monte_carlo(mu: np.ndarray, log_var: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """Monte Carlo estimate of the same KL: mean over z ~ q of log q(z) - log p(z)."""
    if samples < 1:
        raise ValueError("samples must be positive")
    mu, log_var = np.asarray(mu, dtype=np.float64), np.asarray(log_var, dtype=np.float64)
    rng = np.random.default_rng(seed)
    std = np.exp(0.5 * log_var)
    eps = rng.standard_normal((samples,) + mu.shape)
    z = mu + std * eps
    log_q = -0.5 * (eps**2 + log_var + math.log(2 * math.pi))
    log_p = -0.5 * (z**2 + math.log(2 * math.pi))
    return (log_q - log_p).sum(axis=-1).mean(axis=0)


def optimal_discriminator(p_data: np.ndarray, p_model: np.ndarray) -> np.ndarray:
    """D*(x) = p_data(x) / (p_data(x) + p_model(x)), the best discriminator for a fixed generator."""
    p_data, p_model = np.asarray(p_data, dtype=np.float64), np.asarray(p_model, dtype=np.float64)
    if (p_data < 0).any() or (p_model < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_model
    return np.divide(p_data, total, out=np.full_like(total, 0.5), where=total > 0)


def jensen_shannon(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    """Jensen–Shannon divergence (natural log) of two densities sampled on a grid of spacing dx."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or not dx > 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("need two non-negative densities on the same grid and a positive spacing dx")
    m = 0.5 * (p + q)

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])) * dx)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """One-hot rows: row r has a 1 at column labels[r] (classes are numbered 0..num_classes-1)."""
    labels = np.asarray(labels)
    if num_classes < 1:
        raise ValueError("num_classes must be positive")
    if labels.dtype.kind not in "iu" or (labels < 0).any() or (labels >= num_classes).any():
        raise ValueError(f"labels must be integers in 0..{num_classes - 1}; got {labels.tolist()}")
    return np.eye(num_classes)[labels]


def softmax_cross_entropy(z: np.ndarray, y_one_hot: np.ndarray) -> np.ndarray:
    """Cross-entropy -sum_k y_k log softmax(z)_k per row, computed stably as logsumexp(z) - y·z."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y_one_hot, dtype=np.float64)
    if z.shape != y.shape or z.ndim == 0:
        raise ValueError(f"logits {z.shape} and one-hot labels {y.shape} must have the same, non-scalar shape")
    m = z.max(axis=-1, keepdims=True)
    log_sum_exp = (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]
    return log_sum_exp * y.sum(axis=-1) - (y * z).sum(axis=-1)


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function f at x: (f(x + h e_i) - f(x - h e_i)) / 2h.

    Its error is O(h^2) plus rounding of order eps/h, so h = 1e-6 gives about 1e-8 to 1e-10 in float64.
    This is the independent check that hand-derived or automatic gradients are compared with.
    """
    if not h > 0:
        raise ValueError("the step h must be positive")
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is never modified
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = float(f(x))
        x[i] = old - h
        down = float(f(x))
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def side_lengths(n: int, windows) -> list[int]:
    """Side length of the feature map after each layer of a stack of (kernel, stride) windows.

    Convolutions without padding are (k, 1); k×k pooling is (k, k). Returns [n, after layer 1, ...].
    """
    sides = [n]
    for window in windows:
        kernel, stride = window
        sides.append(conv_output_size(sides[-1], kernel, stride))
    return sides
