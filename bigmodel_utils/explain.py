"""Attribution maps for image classifiers, and the checks that keep them honest.

* :func:`saliency` — absolute input gradient of the target logit
  (Simonyan et al., 2014), via Captum;
* :func:`integrated_gradients` — Sundararajan et al. (2017), via Captum, with the
  *completeness* gap (sum of attributions minus ``f(x) - f(baseline)``);
* :func:`cascading_randomization` — the model-randomisation sanity check of
  Adebayo et al. (2018): re-initialise the layers from the output down and see
  whether the explanation changes. An explanation that barely changes when the
  weights become random explains the input, not the model;
* :func:`rank_correlation` and :func:`ssim` — the two similarity measures used there;
* :func:`deletion_drop` — a faithfulness check: remove the most-attributed pixels
  and watch the predicted probability.

Models are plain ``torch.nn.Module`` classifiers returning logits for (N, 1, H, W) input.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .plots import MAX_WIDTH_IN, bare_axes, wrapped


def _captum_attr():
    """``captum.attr``, imported without tqdm's notebook-widget warning (it is not about this code)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import captum.attr

    return captum.attr


def _check_batch(x: torch.Tensor, target) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"expected an image batch tensor of shape (N, C, H, W), got "
                         f"{getattr(x, 'shape', type(x).__name__)}; add a batch axis with x[None]")
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if len(t) not in (1, len(x)):
        raise ValueError(f"target must be one class or one per image ({len(x)}), got {len(t)}")
    return t.expand(len(x)) if len(t) == 1 else t


def saliency(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """|∂ logit_target / ∂ x| for each image (same shape as ``x``)."""
    Saliency = _captum_attr().Saliency
    t = _check_batch(x, target)
    model.eval()
    return Saliency(model).attribute(x.clone().requires_grad_(True), target=t, abs=True).detach()


@dataclass
class IGResult:
    """Integrated-gradients attributions and the completeness check per image."""

    attributions: torch.Tensor  # same shape as x
    sum_attributions: np.ndarray  # (N,)
    logit_difference: np.ndarray  # f(x) - f(baseline), (N,)

    @property
    def completeness_gap(self) -> np.ndarray:
        """|Σ attributions − (f(x) − f(baseline))| per image; 0 for exact integration."""
        return np.abs(self.sum_attributions - self.logit_difference)

    @property
    def relative_gap(self) -> np.ndarray:
        return self.completeness_gap / np.maximum(np.abs(self.logit_difference), 1e-12)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target, *, baseline: torch.Tensor | None = None,
                         n_steps: int = 50, method: str = "gausslegendre") -> IGResult:
    """Integrated gradients of the target logit from ``baseline`` (black image by default)
    to ``x``, with ``n_steps`` quadrature points; also returns what completeness needs."""
    IntegratedGradients = _captum_attr().IntegratedGradients
    t = _check_batch(x, target)
    if n_steps < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    model.eval()
    attr = IntegratedGradients(model).attribute(x, baselines=baseline, target=t, n_steps=n_steps,
                                                method=method, internal_batch_size=256).detach()
    with torch.no_grad():
        rows = torch.arange(len(x))
        diff = (model(x)[rows, t] - model(baseline)[rows, t]).double().numpy()
    return IGResult(attr, attr.flatten(1).sum(1).double().numpy(), diff)


def reinit_layers(model: nn.Module, seed: int = 0):
    """Names of the parametrised layers, output layer first (the order of the cascade)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][::-1]


def cascading_randomization(model: nn.Module, seed: int = 0):
    """Yield ``(layer name, model)`` where each successive model has one more layer
    re-initialised with PyTorch's default initialiser, from the output layer down
    (Adebayo et al., 2018). The first item is ``("trained", copy of model)``."""
    layers = reinit_layers(model)
    if not layers:
        raise ValueError("the model has no Conv2d or Linear layer to randomise")
    current = copy.deepcopy(model).eval()
    yield "trained", copy.deepcopy(current)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for name in layers:
            current.get_submodule(name).reset_parameters()
            yield name, copy.deepcopy(current)
    finally:
        torch.random.set_rng_state(gen_state)


def _per_image(a) -> np.ndarray:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim == 4:
        a = a.sum(1)  # over channels
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected maps of shape (N, H, W) or (N, C, H, W), got {a.shape}")
    return a.astype(np.float64)


def rank_correlation(a, b, absolute: bool = True) -> np.ndarray:
    """Spearman rank correlation between two attribution maps, per image."""
    from scipy.stats import spearmanr

    a, b = _per_image(a), _per_image(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if absolute:
        a, b = np.abs(a), np.abs(b)
    out = []
    for u, v in zip(a, b):
        r = spearmanr(u.ravel(), v.ravel()).statistic
        out.append(0.0 if np.isnan(r) else r)
    return np.array(out)


def ssim(a, b, sigma: float = 1.5) -> np.ndarray:
    """Structural similarity (Wang et al., 2004; Gaussian window) between |maps| scaled to [0, 1], per image."""
    from scipy.ndimage import gaussian_filter

    a, b = _per_image(a), _per_image(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for u, v in zip(np.abs(a), np.abs(b)):
        u, v = u / (u.max() or 1.0), v / (v.max() or 1.0)
        mu, mv = gaussian_filter(u, sigma), gaussian_filter(v, sigma)
        suu = gaussian_filter(u * u, sigma) - mu ** 2
        svv = gaussian_filter(v * v, sigma) - mv ** 2
        suv = gaussian_filter(u * v, sigma) - mu * mv
        s = ((2 * mu * mv + c1) * (2 * suv + c2)) / ((mu ** 2 + mv ** 2 + c1) * (suu + svv + c2))
        out.append(float(s.mean()))
    return np.array(out)


def deletion_drop(model: nn.Module, x: torch.Tensor, target, attributions: torch.Tensor, fraction: float = 0.1,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability of ``target`` before, after zeroing the top ``fraction`` of pixels by
    attribution, and after zeroing as many *random* pixels; each of shape (N,)."""
    t = _check_batch(x, target)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if attributions.shape != x.shape:
        raise ValueError(f"attributions {tuple(attributions.shape)} and images {tuple(x.shape)} differ in shape")
    flat = attributions.flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    top = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
    gen = torch.Generator().manual_seed(seed)
    rand = torch.zeros_like(top)
    for i in range(len(x)):
        rand[i, torch.randperm(flat.shape[1], generator=gen)[:k]] = True
    rows = torch.arange(len(x))

    def prob(images):
        with torch.no_grad():
            return model(images).softmax(1)[rows, t].numpy()

    return (prob(x), prob(x.masked_fill(top.view_as(x), 0.0)), prob(x.masked_fill(rand.view_as(x), 0.0)))


def randomization_similarity(model: nn.Module, x: torch.Tensor, target, methods: dict, seed: int = 0):
    """Adebayo et al.'s cascading model-randomisation test as a table.

    ``methods`` maps a name to ``fn(model, x, target) -> attributions``. For each
    stage of :func:`cascading_randomization` the attributions are compared with those
    of the trained model (absolute-value Spearman correlation and SSIM, mean over the
    images). Returns a DataFrame with columns stage, method, rank_correlation, ssim.
    """
    import pandas as pd

    if not methods:
        raise ValueError("give at least one attribution method, e.g. {'saliency': saliency}")
    _check_batch(x, target)
    reference, rows = {}, []
    for stage, m in cascading_randomization(model, seed=seed):
        for name, fn in methods.items():
            maps = fn(m, x, target)
            if stage == "trained":
                reference[name] = maps
            rows.append({"stage": stage, "method": name,
                         "rank_correlation": float(rank_correlation(reference[name], maps).mean()),
                         "ssim": float(ssim(reference[name], maps).mean())})
    return pd.DataFrame(rows)


def attribution_grid(images, rows: dict, titles, title: str):
    """A figure with the images in the first row and one row per attribution method.

    Unsigned maps are drawn white-to-black; signed maps (with negative values) with a
    diverging purple–orange map centred at zero, so that both read in greyscale as
    intensity and for the common colour-vision deficiencies as two distinct hues.
    """
    import matplotlib.pyplot as plt

    images = _per_image(images)
    n = len(images)
    if len(titles) != n or any(len(_per_image(v)) != n for v in rows.values()):
        raise ValueError("images, every row of maps and titles must have the same length")
    size = min(1.25, (MAX_WIDTH_IN - 0.6) / n)  # inches per image: all columns fit the book's column
    heads = [wrapped(t, size, 10) for t in titles]
    head_h = 0.17 * max(h.count("\n") + 1 for h in heads)
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(size * n + 0.6, (size + 0.1) * (1 + len(rows)) + head_h + 0.6),
                             squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray_r")
        axes[0, j].set_title(heads[j], fontsize=10)
    for i, (label, maps) in enumerate(rows.items(), start=1):
        maps = _per_image(maps)
        for j in range(n):
            m = maps[j]
            if (m < 0).any():
                lim = np.abs(m).max() or 1.0
                axes[i, j].imshow(m, cmap="PuOr_r", vmin=-lim, vmax=lim)
            else:
                axes[i, j].imshow(m, cmap="gray_r")
        axes[i, 0].set_ylabel(wrapped(label, size, 10), fontsize=10)
    bare_axes(axes.ravel())
    axes[0, 0].set_ylabel("input", fontsize=10)
    fig.suptitle(wrapped(title, fig.get_figwidth()))
    fig.tight_layout()
    return fig
