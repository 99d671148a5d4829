"""A small DCGAN on MNIST in plain PyTorch: preprocessing, the two networks, the
training loop, a classifier-based quality measure, saving and reloading.

The chapter follows the article's five steps (preprocess, build, train, evaluate,
deploy). Everything a notebook needs is here, so the chapter shows models and
results, not loops. The networks follow the DCGAN recipe of Radford et al. (2016):
transposed convolutions with batch normalisation and ReLU in the generator,
strided convolutions with LeakyReLU in the discriminator, Adam with β₁ = 0.5, but
much narrower than the paper's so that a few epochs fit a CPU budget.

Losses are computed from the discriminator's *logits* with
``binary_cross_entropy_with_logits`` (numerically safe), never from
probabilities.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .models import load_checkpoint, save_checkpoint
from .plots import MAX_WIDTH_IN
from .sequences import torch_threads

LOSSES = ("non_saturating", "saturating")
THREADS = 2  # torch threads for this module's loops (2 threads: ~1.2x faster for the DCGAN, 2x for the judge CNN on an idle 2-core machine)


# --------------------------------------------------------------------------- step 1: preprocess
def to_gan_images(images) -> np.ndarray:
    """uint8 images (N, 28, 28) in 0..255 → float32 (N, 1, 28, 28) in [−1, 1], the range of the generator's tanh."""
    a = np.asarray(images)
    if a.ndim != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, height, width), got {a.dtype} {a.shape}; "
                         "pass what load_mnist returns")
    return (a.astype(np.float32) / 127.5 - 1.0)[:, None]


def from_gan_images(x) -> np.ndarray:
    """Generator output (N, 1, H, W) in [−1, 1] (tensor or array) → uint8 images (N, H, W) in 0..255."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"expected generator output of shape (N, 1, H, W), got {a.shape}")
    return np.clip(np.rint((a[:, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- step 2: build
def build_generator(latent_dim: int = 32, width: int = 32, seed: int | None = None):
    """DCGAN generator: z (latent_dim) → dense 2w·7·7 → up-conv to 14×14×w → up-conv to 28×28×1, tanh.

    Batch normalisation and ReLU after every layer but the last (Radford et al., 2016).
    """
    import torch
    from torch import nn

    if latent_dim < 1 or width < 1:
        raise ValueError(f"latent_dim and width must be positive, got {latent_dim} and {width}")
    if seed is not None:
        torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False),
        nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # 14×14
        nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),  # 28×28
        nn.Tanh(),
    )
    net.config = dict(kind="generator", latent_dim=latent_dim, width=width)
    return net


def build_discriminator(width: int = 32, spectral_norm: bool = False, seed: int | None = None):
    """DCGAN discriminator: 28×28×1 → conv to 14×14×w → conv to 7×7×2w → one logit (no sigmoid).

    LeakyReLU(0.2) throughout; ``spectral_norm=True`` wraps every weight layer in
    spectral normalisation (Miyato et al., 2018), a common stabiliser.
    """
    import torch
    from torch import nn

    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    if seed is not None:
        torch.manual_seed(seed)
    sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
    net = nn.Sequential(
        sn(nn.Conv2d(1, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # 14×14
        sn(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # 7×7
        nn.Flatten(),
        sn(nn.Linear(2 * width * 7 * 7, 1)),
    )
    net.config = dict(kind="discriminator", width=width, spectral_norm=spectral_norm)
    return net


def generator_params(latent_dim: int, width: int) -> int:
    """Parameter count of :func:`build_generator`, from the layer sizes (to check the built model against)."""
    dense = 2 * width * 49
    return (latent_dim * dense + 2 * dense              # linear (no bias) + batch norm (γ, β)
            + 2 * width * width * 16 + 2 * width         # up-conv (no bias) + batch norm
            + width * 16 + 1)                            # up-conv to one channel, with bias


def discriminator_params(width: int) -> int:
    """Parameter count of :func:`build_discriminator`, from the layer sizes."""
    return (16 * width + width) + (width * 2 * width * 16 + 2 * width) + (2 * width * 49 + 1)


def count_parameters(model) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def layer_table(model, input_shape: tuple[int, ...]):
    """One row per layer of a flat ``nn.Sequential``: name, type, output shape (no batch axis) and parameters, from one forward pass."""
    import pandas as pd
    import torch

    rows, hooks = [], []
    leaves = list(model.named_children())  # the builders here return flat nn.Sequential models
    for name, m in leaves:
        def hook(mod, inp, out, name=name):
            rows.append({"layer": name, "type": type(mod).__name__.replace("Parametrized", ""),
                         "output shape": "×".join(str(s) for s in out.shape[1:]),
                         "parameters": count_parameters(mod)})
        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((2, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- losses
def discriminator_loss(real_logits, fake_logits, real_label: float = 1.0):
    """−log D(x) − log(1 − D(G(z))), averaged; ``real_label < 1`` is one-sided label smoothing (Salimans et al., 2016)."""
    import torch
    import torch.nn.functional as F

    if not 0.5 < real_label <= 1.0:
        raise ValueError(f"real_label must lie in (0.5, 1], got {real_label}")
    return (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits, kind: str = "non_saturating"):
    """Generator loss from the discriminator's logits on fakes.

    ``"saturating"``: the minimax form log(1 − D(G(z))), which G minimises (Goodfellow et al., 2014);
    its gradient vanishes when D confidently rejects the fakes. ``"non_saturating"``: −log D(G(z)),
    the variant the same paper recommends in practice. The two are *different* functions of D(G(z)).
    """
    import torch.nn.functional as F

    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()    # −log σ(l)
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()    # log(1 − σ(l)) = −softplus(l)
    raise ValueError(f"unknown generator loss {kind!r}; choose one of {', '.join(LOSSES)}")


# --------------------------------------------------------------------------- step 3: train
def latent_noise(n: int, latent_dim: int, seed: int = 0):
    """A fixed batch of standard normal noise vectors (seeded, independent of the global RNG)."""
    import torch

    if n < 1 or latent_dim < 1:
        raise ValueError(f"n and latent_dim must be positive, got {n} and {latent_dim}")
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


def train_gan(images, *, latent_dim: int = 32, width: int = 32, epochs: int = 3, batch_size: int = 64,
              lr_g: float = 2e-4, lr_d: float = 2e-4, loss: str = "non_saturating", real_label: float = 1.0,
              spectral_norm: bool = False, seed: int = 0, n_fixed: int = 32, log_every: int = 20,
              progress: bool = True, label: str = "", threads: int = THREADS):
    """Train a DCGAN on uint8 ``images`` (N, 28, 28): alternately one discriminator step, one generator step.

    Adam(β₁ = 0.5, β₂ = 0.999) for both networks. After each epoch the generator draws
    ``n_fixed`` images from one fixed noise batch (the same every epoch, so the grid shows
    one sample evolving). Progress: a tqdm bar on stderr and one deterministic summary
    line per epoch on stdout. Returns a dict with ``generator``, ``discriminator``,
    ``history`` (DataFrame, one row per ``log_every`` steps: ``step``, ``epoch``,
    ``d_loss``, ``g_loss``, ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z))),
    ``samples`` (list of uint8 arrays, one per epoch) and ``fixed_noise``. Runs with
    ``threads`` torch threads (results depend on the thread count).
    """
    import torch

    if loss not in LOSSES:
        raise ValueError(f"unknown generator loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if epochs < 1 or batch_size < 2 or log_every < 1 or n_fixed < 1:
        raise ValueError("epochs, log_every and n_fixed must be positive and batch_size at least 2")
    x = torch.from_numpy(to_gan_images(images))
    if len(x) < batch_size:
        raise ValueError(f"{len(x)} images are fewer than one batch of {batch_size}; lower batch_size")
    with torch_threads(threads):
        return _train_gan(x, latent_dim, width, epochs, batch_size, lr_g, lr_d, loss, real_label, spectral_norm,
                          seed, n_fixed, log_every, progress, label)


def _train_gan(x, latent_dim, width, epochs, batch_size, lr_g, lr_d, loss, real_label, spectral_norm, seed, n_fixed,
               log_every, progress, label):
    import pandas as pd
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    G = build_generator(latent_dim, width)
    D = build_discriminator(width, spectral_norm=spectral_norm)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    fixed = latent_noise(n_fixed, latent_dim, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed)
    steps = len(x) // batch_size  # drop the last partial batch (batch norm needs full batches)
    rows, samples, acc, step = [], [], np.zeros(4), 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(total=steps, desc=f"{label + ' ' if label else ''}epoch {epoch + 1}/{epochs}", unit="batch",
                   mininterval=2.0, file=sys.stderr, disable=not progress)
        G.train(), D.train()
        for i in range(steps):
            real = x[order[i * batch_size:(i + 1) * batch_size]]
            z = torch.randn(batch_size, latent_dim, generator=gen)
            fake = G(z)
            real_logits, fake_logits = D(real), D(fake.detach())
            d_loss = discriminator_loss(real_logits, fake_logits, real_label)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_logits = D(fake)
            g_loss = generator_loss(g_logits, loss)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            step += 1
            acc += (d_loss.item(), g_loss.item(), torch.sigmoid(real_logits).mean().item(),
                    torch.sigmoid(fake_logits).mean().item())
            if step % log_every == 0 or i == steps - 1:
                n = step - (rows[-1]["step"] if rows else 0)
                rows.append(dict(step=step, epoch=epoch + (i + 1) / steps,
                                 **dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), acc / n))))
                acc[:] = 0
            bar.update(1)
        bar.close()
        samples.append(generate(G, fixed))
        if progress:
            ep = [r for r in rows if epoch < r["epoch"] <= epoch + 1]
            m = {k: np.mean([r[k] for r in ep]) for k in ("d_loss", "g_loss", "d_real", "d_fake")}
            print(f"{label + ': ' if label else ''}epoch {epoch + 1}/{epochs}: D loss {m['d_loss']:.3f}, "
                  f"G loss {m['g_loss']:.3f}, D(x) {m['d_real']:.3f}, D(G(z)) {m['d_fake']:.3f}", flush=True)
    G.eval(), D.eval()
    return dict(generator=G, discriminator=D, history=pd.DataFrame(rows), samples=samples, fixed_noise=fixed)


def generate(generator, noise):
    """uint8 images (N, 28, 28) from a generator, in evaluation mode, for a noise batch
    (a tensor of shape (N, latent_dim), or an int N for seeded noise with seed 0)."""
    import torch

    latent_dim = generator.config["latent_dim"] if hasattr(generator, "config") else None
    if isinstance(noise, (int, np.integer)):
        if latent_dim is None:
            raise ValueError("pass a noise tensor: this generator has no config with its latent_dim")
        noise = latent_noise(int(noise), latent_dim)
    if noise.ndim != 2 or (latent_dim is not None and noise.shape[1] != latent_dim):
        raise ValueError(f"expected noise of shape (N, {latent_dim}), got {tuple(noise.shape)}")
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        out = from_gan_images(generator(noise))
    generator.train(was_training)
    return out


# --------------------------------------------------------------------------- step 4: evaluate
def train_digit_classifier(images, labels, images_eval, labels_eval, *, epochs: float = 1, seed: int = 0,
                           progress: bool = True, threads: int = THREADS):
    """The article's CNN (:class:`bigmodel_utils.fastpath.ArticleCNN`) trained by
    :func:`bigmodel_utils.fastpath.train_fast` (batch 128); returns ``(model, accuracy on the
    evaluation images)``. It is the judge of the generated digits."""
    import torch

    from .fastpath import ArticleCNN, accuracy, to_tensor, train_fast

    if len(images) != len(labels) or len(images_eval) != len(labels_eval):
        raise ValueError("images and labels differ in length")
    with torch_threads(threads):
        torch.manual_seed(seed)
        model = ArticleCNN()
        x, xe = to_tensor(images), to_tensor(images_eval)
        y, ye = (torch.from_numpy(np.asarray(v, np.int64)) for v in (labels, labels_eval))
        train_fast(model, x, y, xe, ye, epochs=epochs, batch_size=128, max_lr=4e-3, evals_per_epoch=1, seed=seed,
                   progress=progress)
        model.eval()
        return model, accuracy(model, xe, ye)


def class_probabilities(classifier, images, batch_size: int = 1000) -> np.ndarray:
    """Softmax class probabilities (N, 10) of uint8 digit images (N, 28, 28) under ``classifier``."""
    import torch

    from .fastpath import to_tensor

    x = to_tensor(images)
    classifier.eval()
    with torch.no_grad(), torch_threads():
        return np.concatenate([torch.softmax(classifier(x[i:i + batch_size]), 1).numpy()
                               for i in range(0, len(x), batch_size)])


def sample_quality(probs) -> dict:
    """Quality and diversity of a set of samples from the classifier's probabilities (N, C).

    ``histogram``: share of samples per predicted class; ``entropy_bits``: entropy of that
    histogram (log₂ C for perfectly even classes, 0 when every sample is one class: mode
    collapse); ``top_share``: share of the most frequent class; ``confidence``: mean max
    probability (how digit-like the samples look to the classifier); ``score``: the
    Inception-Score formula exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al., 2016) with this
    classifier instead of Inception, between 1 and C; high only if samples are both
    confidently classified and spread over the classes.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"expected a non-empty (N, classes) array of probabilities, got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("rows must be probability vectors (non-negative, summing to 1); apply softmax first")
    hist = np.bincount(p.argmax(1), minlength=p.shape[1]) / len(p)
    nz = hist[hist > 0]
    marginal = p.mean(0)
    eps = 1e-12
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(1)
    return dict(histogram=hist, entropy_bits=float(-(nz * np.log2(nz)).sum()), top_share=float(hist.max()),
                confidence=float(p.max(1).mean()), score=float(np.exp(kl.mean())))


# --------------------------------------------------------------------------- step 5: deploy
def save_generator(generator, path) -> Path:
    """Save a generator from :func:`build_generator`: its weights and the settings to rebuild it (JSON beside it)."""
    if getattr(generator, "config", {}).get("kind") != "generator":
        raise ValueError("only generators built by build_generator can be saved this way")
    return save_checkpoint(path, describe=generator.config, config=dict(generator.config),
                           state=generator.state_dict())


def load_generator(path):
    """Rebuild a generator saved by :func:`save_generator` (weights only, no pickled code), in eval mode."""
    saved = load_checkpoint(path, "save a generator first with save_generator")
    cfg = saved["config"]
    generator = build_generator(cfg["latent_dim"], cfg["width"])
    generator.load_state_dict(saved["state"])
    generator.eval()
    return generator


def sample_grid(samples, title: str, ncols: int = 8, row_labels=None):
    """A figure of image rows: ``samples`` is a list of uint8 arrays (each a row of ``ncols`` images)."""
    import matplotlib.pyplot as plt

    if not samples:
        raise ValueError("sample_grid needs at least one row of images")
    nrows = len(samples)
    label_w = 0.09 * max((len(str(t)) for t in row_labels), default=0) + 0.2 if row_labels is not None else 0.2
    size = min(0.9, (MAX_WIDTH_IN - label_w) / ncols)  # inches per image: images and row labels fit the book's column
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + label_w, size * nrows + 0.6), squeeze=False)
    for r, row in enumerate(samples):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(row):
                ax.imshow(row[c], cmap="gray_r", vmin=0, vmax=255)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
