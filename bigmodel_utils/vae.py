"""Variational autoencoder (VAE, 变分自编码器) on binarised MNIST, in plain PyTorch.

Why a module: the VAE chapter makes several numerical claims (the analytic KL term
equals its Monte Carlo estimate, gradients flow through the reparameterised sample,
the test ELBO in nats, what happens without the KL term), and each must come from
named, tested code rather than ad-hoc notebook arithmetic.

Conventions used throughout
---------------------------
* Data: MNIST pixels are **statically binarised** (pixel > 127 → 1, else 0), so the
  Bernoulli likelihood is a proper probability of a discrete image and every ELBO is
  a lower bound on a log-probability, in nats per image.
* Model: ``q(z|x) = N(mu(x), diag(exp(log_var(x))))``, ``p(z) = N(0, I)``,
  ``p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i(z)))``.
* ``elbo = E_q[log p(x|z)] - KL(q(z|x) || p(z))`` (higher is better); the training
  loss is ``-elbo`` averaged over a batch.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from .models import load_checkpoint, save_checkpoint
from .plots import MAX_WIDTH_IN, bare_axes, wrapped

N_PIXELS = 28 * 28
OBJECTIVES = ("elbo", "article_mse")


# ---------------------------------------------------------------- data
def binarize(images, threshold: int = 127) -> np.ndarray:
    """uint8 images (N, 28, 28) → float32 array (N, 784) of 0/1 (pixel > threshold)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels 0..255 as returned by data.load_mnist, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {x.shape}; reshape them first")
    if not 0 <= threshold < 255:
        raise ValueError(f"threshold must lie in 0..254, got {threshold}")
    return (x > threshold).astype(np.float32).reshape(len(x), N_PIXELS)


def _as_batch(x, device: str | torch.device = "cpu") -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32, device=device)
    if t.ndim != 2 or t.shape[1] != N_PIXELS:
        raise ValueError(f"expected flattened images of shape (N, {N_PIXELS}); use vae.binarize(images) first, "
                         f"got {tuple(t.shape)}")
    return t


# ---------------------------------------------------------------- model
class VAE(nn.Module):
    """MLP VAE: 784 → hidden → (mu, log_var) of size ``latent_dim``; latent → hidden → 784 logits."""

    def __init__(self, latent_dim: int = 16, hidden: int = 512):
        super().__init__()
        if latent_dim < 1 or hidden < 1:
            raise ValueError(f"latent_dim and hidden must be positive, got {latent_dim} and {hidden}")
        self.latent_dim, self.hidden = int(latent_dim), int(hidden)
        self.enc = nn.Sequential(nn.Linear(N_PIXELS, hidden), nn.ReLU())
        self.enc_mu = nn.Linear(hidden, latent_dim)
        self.enc_log_var = nn.Linear(hidden, latent_dim)
        self.dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, N_PIXELS))

    def config(self) -> dict:
        return {"latent_dim": self.latent_dim, "hidden": self.hidden}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(z|x): mean and log-variance, each (N, latent_dim)."""
        h = self.enc(x)
        return self.enc_mu(h), self.enc_log_var(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x|z), (N, 784); pixel probabilities are their sigmoid."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latent codes of shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.dec(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, generator=generator)
        return self.decode_logits(z), mu, log_var, z


def expected_parameters(latent_dim: int, hidden: int) -> int:
    """Parameter count of :class:`VAE` from the layer sizes (weights + biases)."""
    enc = N_PIXELS * hidden + hidden + 2 * (hidden * latent_dim + latent_dim)
    dec = latent_dim * hidden + hidden + hidden * N_PIXELS + N_PIXELS
    return enc + dec


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the objective
def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): the sample is a differentiable function of mu and log_var."""
    if mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must have one shape, got {tuple(mu.shape)} and {tuple(log_var.shape)}")
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    elif eps.shape != mu.shape:
        raise ValueError(f"eps must have the shape of mu {tuple(mu.shape)}, got {tuple(eps.shape)}")
    return mu + torch.exp(0.5 * log_var) * eps


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(mu, diag(exp(log_var))) || N(0, I)) per row, in nats:
    0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1)."""
    if mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must have one shape, got {tuple(mu.shape)} and {tuple(log_var.shape)}")
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0).sum(dim=-1)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mu).pow(2) / log_var.exp()).sum(dim=-1)


def kl_monte_carlo(mu: torch.Tensor, log_var: torch.Tensor, samples: int, seed: int = 0):
    """Monte Carlo estimate of the same KL, mean of log q(z|x) - log p(z) over ``samples`` draws.

    Returns (estimate, standard error) per row, so a test can compare with :func:`gaussian_kl`
    within a few standard errors.
    """
    if samples < 2:
        raise ValueError(f"samples must be at least 2 to estimate a standard error, got {samples}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    eps = torch.randn((samples, *mu.shape), generator=g, dtype=mu.dtype).to(mu.device)
    z = mu + torch.exp(0.5 * log_var) * eps
    zeros = torch.zeros_like(mu)
    terms = _log_normal(z, mu, log_var) - _log_normal(z, zeros, zeros)
    return terms.mean(dim=0), terms.std(dim=0) / math.sqrt(samples)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) per row for binary x, summed over pixels (nats)."""
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have one shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


def article_mse(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The article's VAE loss: 0.5 * sum_i (x_hat_i - x_i)^2 with x_hat = sigmoid(logits) (no KL term)."""
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have one shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    return 0.5 * (torch.sigmoid(logits) - x).pow(2).sum(dim=-1)


def loss_terms(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    """One-sample ELBO and its parts per row: ``rec`` = log p(x|z), ``kl``, ``elbo`` = rec - kl."""
    logits, mu, log_var, _ = model(x, generator=generator)
    rec = bernoulli_log_likelihood(logits, x)
    kl = gaussian_kl(mu, log_var)
    return {"rec": rec, "kl": kl, "elbo": rec - kl, "logits": logits}


def objective(model: VAE, x: torch.Tensor, kind: str = "elbo", generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar training loss: ``"elbo"`` → mean negative ELBO; ``"article_mse"`` → mean article MSE, no KL."""
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; choose one of {OBJECTIVES}")
    if kind == "elbo":
        return -loss_terms(model, x, generator)["elbo"].mean()
    logits, *_ = model(x, generator=generator)
    return article_mse(logits, x).mean()


def gradient_flow_check(model: VAE, x, seed: int = 0) -> dict:
    """Gradient of the one-sample ELBO w.r.t. the encoder's mean head, with and without the trick.

    ``reparameterised``: z = mu + sigma*eps keeps z differentiable, so the encoder receives
    the reconstruction gradient. ``detached``: z sampled outside the graph (as plain sampling
    does), so the encoder's mean head only sees the KL term's gradient.
    Returns the gradient norms of ``enc_mu.weight`` for both, and of the reconstruction term alone.
    """
    x = _as_batch(x, next(model.parameters()).device)
    out = {}
    for mode in ("reparameterised", "detached"):
        model.zero_grad(set_to_none=True)
        g = torch.Generator(device="cpu").manual_seed(seed)
        mu, log_var = model.encode(x)
        eps = torch.randn(mu.shape, generator=g).to(mu.device)
        z = reparameterize(mu, log_var, eps=eps)
        if mode == "detached":
            z = z.detach()
        rec = bernoulli_log_likelihood(model.decode_logits(z), x).mean()
        (-rec).backward()
        grad = model.enc_mu.weight.grad
        out[mode] = 0.0 if grad is None else float(grad.norm())
    model.zero_grad(set_to_none=True)
    return out


# ---------------------------------------------------------------- training
@dataclass
class TrainResult:
    history: list = field(default_factory=list)  # one dict per epoch
    seconds: float = 0.0


def train_vae(model: VAE, x_train, x_val, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
              kind: str = "elbo", seed: int = 0, verbose: bool = True) -> TrainResult:
    """Adam on ``kind`` (see :func:`objective`); after each epoch the validation ELBO (always the
    true Bernoulli ELBO, whatever the training loss) is recorded and, if ``verbose``, printed;
    ``verbose`` also shows a tqdm bar over the batches on stderr."""
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; choose one of {OBJECTIVES}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    device = next(model.parameters()).device
    xt, xv = _as_batch(x_train, device), _as_batch(x_val, device)
    torch.manual_seed(seed)
    g = torch.Generator(device="cpu").manual_seed(seed)
    gd = g if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=g).to(device)
        total, n = 0.0, 0
        batches = range(0, len(xt), batch_size)
        for i in tqdm(batches, desc=f"{kind} epoch {epoch}/{epochs}", unit="batch", file=sys.stderr,
                      mininterval=2.0, disable=not verbose, leave=False):
            xb = xt[order[i:i + batch_size]]
            loss = objective(model, xb, kind, generator=gd)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            n += len(xb)
        val = evaluate(model, xv, seed=seed)
        row = {"epoch": epoch, "train_loss": total / n, "val_elbo": val["elbo"], "val_rec": val["rec"],
               "val_kl": val["kl"]}
        result.history.append(row)
        if verbose:
            print(f"epoch {epoch}: train loss {row['train_loss']:.2f} ({kind}) | validation ELBO "
                  f"{row['val_elbo']:.2f} nats = log-lik {row['val_rec']:.2f} - KL {row['val_kl']:.2f}")
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: VAE, x, *, batch_size: int = 1000, seed: int = 0) -> dict:
    """Mean one-sample ELBO, log-likelihood term and KL (nats per image) over ``x``."""
    model.eval()
    device = next(model.parameters()).device
    x = _as_batch(x, device)
    g = torch.Generator(device=device).manual_seed(seed)
    sums = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
    for i in range(0, len(x), batch_size):
        t = loss_terms(model, x[i:i + batch_size], generator=g)
        for k in sums:
            sums[k] += float(t[k].sum())
    return {k: v / len(x) for k, v in sums.items()}


@torch.no_grad()
def importance_sampled_log_likelihood(model: VAE, x, k: int, *, batch_size: int = 100, seed: int = 0) -> float:
    """Mean importance-weighted bound log (1/k) sum_j p(x, z_j) / q(z_j|x), z_j ~ q(z|x)
    (Burda et al.); k = 1 is the ELBO, and the bound tightens towards log p(x) as k grows."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    device = next(model.parameters()).device
    x = _as_batch(x, device)
    g = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        mu, log_var = model.encode(xb)
        eps = torch.randn((k, *mu.shape), generator=g, device=device)
        z = mu + torch.exp(0.5 * log_var) * eps  # (k, B, d)
        logits = model.decode_logits(z.reshape(-1, model.latent_dim)).reshape(k, len(xb), N_PIXELS)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, xb.expand(k, -1, -1), reduction="none").sum(-1)
        zeros = torch.zeros_like(z)
        log_w = log_px_z + _log_normal(z, zeros, zeros) - _log_normal(z, mu, log_var)
        total += float((torch.logsumexp(log_w, dim=0) - math.log(k)).sum())
    return total / len(x)


@torch.no_grad()
def encode_means(model: VAE, x, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances as numpy arrays."""
    model.eval()
    device = next(model.parameters()).device
    x = _as_batch(x, device)
    mus, lvs = [], []
    for i in range(0, len(x), batch_size):
        mu, lv = model.encode(x[i:i + batch_size])
        mus.append(mu.cpu())
        lvs.append(lv.cpu())
    return torch.cat(mus).numpy(), torch.cat(lvs).numpy()


def latent_statistics(mu: np.ndarray, log_var: np.ndarray) -> dict:
    """How far the codes are from the prior N(0, I).

    * ``mean_sq_norm``: mean ||mu||^2 (for codes drawn from N(0, I) it would be about d);
    * ``posterior_kl``: mean analytic KL(q(z|x) || p(z)) per image;
    * ``aggregate_kl``: KL(N(m, S) || N(0, I)) of a Gaussian moment-matched to the aggregate
      posterior (mixture of all q(z|x)); 0 when the codes as a whole look like the prior.
    """
    mu, log_var = np.asarray(mu, dtype=np.float64), np.asarray(log_var, dtype=np.float64)
    if mu.ndim != 2 or mu.shape != log_var.shape or len(mu) < 2:
        raise ValueError(f"mu and log_var must be (N, d) arrays of one shape with N >= 2, got {mu.shape}, {log_var.shape}")
    d = mu.shape[1]
    m = mu.mean(axis=0)
    cov = np.cov(mu, rowvar=False).reshape(d, d) + np.diag(np.exp(log_var).mean(axis=0))
    sign, logdet = np.linalg.slogdet(cov)
    agg = 0.5 * (np.trace(cov) + m @ m - d - logdet) if sign > 0 else float("inf")
    post = 0.5 * (mu ** 2 + np.exp(log_var) - log_var - 1).sum(axis=1).mean()
    return {"latent_dim": d, "mean_sq_norm": float((mu ** 2).sum(axis=1).mean()), "posterior_kl": float(post),
            "aggregate_kl": float(agg), "mean_posterior_std": float(np.exp(0.5 * log_var).mean())}


# ---------------------------------------------------------------- generation
@torch.no_grad()
def decode(model: VAE, z) -> np.ndarray:
    """Pixel probabilities (N, 28, 28) for latent codes z (N, d)."""
    model.eval()
    device = next(model.parameters()).device
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device)
    return torch.sigmoid(model.decode_logits(z)).cpu().numpy().reshape(-1, 28, 28)


def sample_prior(model: VAE, n: int, seed: int = 0) -> np.ndarray:
    """Decode ``n`` codes drawn from the prior N(0, I): the VAE's generated digits (probabilities)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    z = np.random.default_rng(seed).standard_normal((n, model.latent_dim)).astype(np.float32)
    return decode(model, z)


def manifold_grid(model: VAE, n: int = 15, eps: float = 0.05) -> np.ndarray:
    """A 2-D latent model's decoded manifold: an n×n grid of Gaussian quantiles in (eps, 1-eps),
    stitched into one (28n, 28n) image (top row = largest z2)."""
    from scipy.stats import norm

    if model.latent_dim != 2:
        raise ValueError(f"the manifold grid needs a model with latent_dim=2, got {model.latent_dim}")
    if n < 2 or not 0 < eps < 0.5:
        raise ValueError(f"need n >= 2 and 0 < eps < 0.5, got n={n}, eps={eps}")
    q = norm.ppf(np.linspace(eps, 1 - eps, n))
    zz = np.array([[a, b] for b in q[::-1] for a in q], dtype=np.float32)
    imgs = decode(model, zz).reshape(n, n, 28, 28)
    return imgs.transpose(0, 2, 1, 3).reshape(28 * n, 28 * n)


def tile(images: np.ndarray, ncols: int) -> np.ndarray:
    """Stitch (N, 28, 28) images into one picture with ``ncols`` columns (N must be a multiple)."""
    images = np.asarray(images)
    if images.ndim != 3 or len(images) % ncols:
        raise ValueError(f"need (N, h, w) images with N a multiple of ncols={ncols}, got {images.shape}")
    nrows, h, w = len(images) // ncols, images.shape[1], images.shape[2]
    return images.reshape(nrows, ncols, h, w).transpose(0, 2, 1, 3).reshape(nrows * h, ncols * w)


# ---------------------------------------------------------------- a quick judge of samples
class DigitClassifier(nn.Module):
    """Small MLP (784-256-10) used only to judge generated digits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_PIXELS, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


def train_classifier(x, y, *, epochs: int = 2, batch_size: int = 128, seed: int = 0) -> DigitClassifier:
    """Fit :class:`DigitClassifier` on binarised images (N, 784) and labels 0..9."""
    xt = _as_batch(x)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if len(yt) != len(xt):
        raise ValueError(f"x and y differ in length: {len(xt)} vs {len(yt)}")
    torch.manual_seed(seed)
    clf = DigitClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(clf(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clf.eval()


@torch.no_grad()
def classifier_accuracy(clf: DigitClassifier, x, y) -> float:
    pred = clf(_as_batch(x)).argmax(1).numpy()
    return float((pred == np.asarray(y)).mean())


@torch.no_grad()
def sample_quality(clf: DigitClassifier, probabilities: np.ndarray, seed: int = 0) -> dict:
    """Judge generated digits: binarise them by sampling each pixel from its probability, classify.

    ``inception_score`` = exp(E_x[KL(p(y|x) || p(y))]) (1 = useless, 10 = confident and all
    classes equally often); ``confident_share`` = share with max p(y|x) > 0.9; ``class_counts``.
    """
    p = np.asarray(probabilities, dtype=np.float32).reshape(len(probabilities), -1)
    if p.shape[1] != N_PIXELS or p.min() < 0 or p.max() > 1:
        raise ValueError("expected pixel probabilities in [0, 1] of shape (N, 28, 28) or (N, 784)")
    x = (np.random.default_rng(seed).random(p.shape) < p).astype(np.float32)
    probs = torch.softmax(clf(torch.from_numpy(x)), dim=1).numpy().astype(np.float64)
    marginal = probs.mean(axis=0)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
    return {"inception_score": float(np.exp(kl.mean())), "confident_share": float((probs.max(1) > 0.9).mean()),
            "class_counts": np.bincount(probs.argmax(1), minlength=10)}


# ---------------------------------------------------------------- deployment
def save_vae(model: VAE, path: str | os.PathLike) -> Path:
    """Save configuration and weights in one file (torch.save of plain tensors and ints)."""
    return save_checkpoint(path, config=model.config(), state_dict={k: v.cpu() for k, v in model.state_dict().items()})


def load_vae(path: str | os.PathLike) -> VAE:
    """Rebuild a :class:`VAE` saved by :func:`save_vae` (weights only; no pickled code is executed)."""
    blob = load_checkpoint(path, "save a model first with vae.save_vae(model, path)")
    model = VAE(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


# ---------------------------------------------------------------- figures
_CLASS_COLOURS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                  "#999999", "#661100")
_CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def latent_scatter(codes: np.ndarray, labels: np.ndarray, title: str, limit: float | None = 4.0):
    """Scatter of 2-D latent codes, one colour *and* marker per digit class, with the prior's
    1- and 2-sigma circles for reference."""
    import matplotlib.pyplot as plt

    codes, labels = np.asarray(codes), np.asarray(labels)
    if codes.ndim != 2 or codes.shape[1] != 2 or len(codes) != len(labels):
        raise ValueError(f"need (N, 2) codes and N labels, got {codes.shape} and {labels.shape}")
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    for c in range(10):
        sel = labels == c
        ax.scatter(codes[sel, 0], codes[sel, 1], s=7, alpha=0.6, color=_CLASS_COLOURS[c],
                   marker=_CLASS_MARKERS[c], label=str(c), linewidths=0)
    t = np.linspace(0, 2 * np.pi, 200)
    for r, ls in ((1, "--"), (2, ":")):
        ax.plot(r * np.cos(t), r * np.sin(t), color="black", linestyle=ls, linewidth=1)
    if limit:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$ (posterior mean)")
    ax.set_ylabel("$z_2$ (posterior mean)")
    ax.set_title(title)
    ax.legend(title="digit", markerscale=2.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def picture_panels(pictures: dict, title: str, width: float = 4.2):
    """Side-by-side greyscale pictures (e.g. from :func:`tile` or :func:`manifold_grid`), one per key;
    ``width`` is inches per panel, reduced where the panels would not fit the book's column."""
    import matplotlib.pyplot as plt

    if not pictures:
        raise ValueError("picture_panels needs at least one picture")
    aspect = max(np.asarray(pic).shape[0] / np.asarray(pic).shape[1] for pic in pictures.values())
    width = min(width, MAX_WIDTH_IN / len(pictures))  # all panels fit the book's column
    names = [wrapped(name, width, 11) for name in pictures]
    heading = wrapped(title, width * len(pictures))
    lines = max(n.count("\n") for n in names) + heading.count("\n")
    fig, axes = plt.subplots(1, len(pictures), figsize=(width * len(pictures), width * aspect + 0.8 + 0.22 * lines),
                             squeeze=False)
    for ax, name, pic in zip(axes[0], names, pictures.values()):
        ax.imshow(pic, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(name, fontsize=11)
    bare_axes(axes[0])
    fig.suptitle(heading)
    fig.tight_layout()
    return fig
