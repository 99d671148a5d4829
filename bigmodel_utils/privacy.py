"""Differentially private training (DP-SGD) with Opacus, for the privacy chapter.

Why a module: the chapter compares the same small MNIST model trained with and
without differential privacy at several privacy budgets ε. The model, the
noise calibration (which noise multiplier σ gives a target ε), the training loop
and the privacy accountant's final ε must be one tested code path, so the table
the book prints comes from named functions rather than ad-hoc cell code.

References: Dwork & Roth (2014) for the definition of (ε, δ)-differential
privacy; Abadi et al. (2016) for DP-SGD (per-example gradient clipping plus
Gaussian noise, with a moments/Rényi accountant).
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .sequences import torch_threads

ACCOUNTANT = "rdp"


def build_model(seed: int = 0, norm: str = "group"):
    """A small multilayer perceptron for MNIST digits (13,386 parameters), compatible with Opacus.

    2×2 average pooling (28×28 → 14×14 = 196 inputs, no parameters) → 64 (normalisation, tanh) → 10.
    Small on purpose: DP-SGD computes and clips a gradient per example, which costs memory and
    time in proportion to the parameter count. ``norm="group"`` (default) uses GroupNorm, which
    normalises each example on its own; ``norm="batch"`` uses BatchNorm, which mixes the examples
    of a batch, so per-example gradients (and hence DP-SGD) are not defined: Opacus'
    ``ModuleValidator`` rejects it. tanh rather than ReLU follows Papernot et al. (2021), who found
    bounded activations to suit DP-SGD better.
    """
    import torch
    from torch import nn

    if norm not in ("group", "batch"):
        raise ValueError(f"norm must be 'group' or 'batch', got {norm!r}")
    torch.manual_seed(seed)
    layer_norm = nn.GroupNorm(8, 64) if norm == "group" else nn.BatchNorm1d(64)
    return nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(14 * 14, 64), layer_norm, nn.Tanh(),
                         nn.Linear(64, 10))


def opacus_errors(model) -> list[str]:
    """Opacus' list of reasons why ``model`` cannot be trained with DP-SGD (empty list = compatible)."""
    from opacus.validators import ModuleValidator

    return [str(e) for e in ModuleValidator.validate(model, strict=False)]


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def noise_for_budget(epsilon: float, delta: float, sample_rate: float, epochs: int) -> float:
    """Noise multiplier σ that makes ``epochs`` of DP-SGD with Poisson sampling rate ``sample_rate``
    spend exactly (up to 0.01) the budget (ε, δ), according to Opacus' RDP accountant."""
    from opacus.accountants.utils import get_noise_multiplier

    _check_budget(epsilon, delta)
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}; use batch_size / n_train")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                      epochs=epochs, accountant=ACCOUNTANT))


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε that the RDP accountant reports for ``steps`` DP-SGD steps at noise σ and sampling rate q."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, int(steps))]
    return float(acc.get_epsilon(delta))


def _check_budget(epsilon, delta):
    if not (epsilon > 0 and np.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon}; use epsilon=None for no privacy")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}; a common choice is below 1/n_train")


@dataclass(frozen=True)
class DPResult:
    """Outcome of one training run. ``target_epsilon`` and ``epsilon`` are ``inf`` without privacy."""

    target_epsilon: float
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    epochs: int
    steps: int
    test_accuracy: float
    train_loss: float
    test_loss: float
    membership_auc: float
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _tensors(x, y):
    import torch

    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"expected {len(x)} labels, got shape {y.shape}")
    xt = torch.from_numpy(x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32))
    return ((xt - 0.1307) / 0.3081).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def per_example_losses(model, x, y, batch_size: int = 2048) -> np.ndarray:
    """Cross-entropy loss of every example (no gradient), in input order."""
    import torch
    import torch.nn.functional as F

    xt, yt = _tensors(x, y)
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(xt), batch_size):
            out.append(F.cross_entropy(model(xt[i:i + batch_size]), yt[i:i + batch_size], reduction="none"))
    return torch.cat(out).numpy()


def accuracy(model, x, y, batch_size: int = 2048) -> float:
    import torch

    xt, yt = _tensors(x, y)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + batch_size]).argmax(1) for i in range(0, len(xt), batch_size)])
    return float((pred == yt).float().mean())


def membership_auc(member_losses, nonmember_losses) -> float:
    """AUC of the loss-threshold membership-inference attack: the probability that a random training
    example (member) has a lower loss than a random unseen one. 0.5 = the attacker learns nothing."""
    from scipy.stats import rankdata

    a = np.asarray(member_losses, dtype=float)
    b = np.asarray(nonmember_losses, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError("member and non-member losses must be non-empty 1-D arrays")
    ranks = rankdata(np.concatenate([-a, -b]))  # higher score = "member"
    return float((ranks[: a.size].sum() - a.size * (a.size + 1) / 2) / (a.size * b.size))


def train(x_train, y_train, x_test, y_test, *, epsilon: float | None, delta: float = 1e-5, epochs: int = 2,
          batch_size: int = 256, learning_rate: float = 0.1, momentum: float = 0.9, max_grad_norm: float = 1.0, seed: int = 0,
          n_probe: int = 2_000, threads: int | None = 1, log=print) -> DPResult:
    """Train :func:`build_model` with plain SGD (``epsilon=None``) or DP-SGD at budget (ε, δ).

    Both use the same model, optimiser (SGD with momentum), learning rate, batch size and
    number of epochs. DP-SGD uses Poisson sampling (expected batch ``batch_size``), clips every
    example's gradient to L2 norm ``max_grad_norm`` and adds Gaussian noise σ·C, σ from
    :func:`noise_for_budget`. ``n_probe`` training and test examples feed the membership-inference AUC.
    ``threads`` (default 1) sets PyTorch's thread count during the run (restored afterwards): the
    model is too small to gain from more, and on a busy machine extra threads only wait on each other.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if epsilon is not None:
        _check_budget(epsilon, delta)
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    xt, yt = _tensors(x_train, y_train)
    with torch_threads(threads) if threads else contextlib.nullcontext():
        return _train(xt, yt, x_train, y_train, x_test, y_test, epsilon, delta, epochs, batch_size, learning_rate,
                      momentum, max_grad_norm, seed, n_probe, log)


def _train(xt, yt, x_train, y_train, x_test, y_test, epsilon, delta, epochs, batch_size, learning_rate, momentum,
           max_grad_norm, seed, n_probe, log):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    n = len(xt)
    torch.manual_seed(seed)
    model = build_model(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, shuffle=True, generator=gen)
    sigma, engine = 0.0, None
    if epsilon is not None:
        from opacus import PrivacyEngine

        sigma = noise_for_budget(epsilon, delta, batch_size / n, epochs)
        engine = PrivacyEngine(accountant=ACCOUNTANT, secure_mode=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, optimizer, loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
                max_grad_norm=max_grad_norm, poisson_sampling=True, noise_generator=gen)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            with warnings.catch_warnings():  # Opacus' hooks warn that the input needs no gradient: harmless
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            optimizer.step()
            total, count, steps = total + float(loss.detach()) * len(xb), count + len(xb), steps + 1
        if log:
            label = "non-private" if epsilon is None else f"eps={epsilon:g}"
            log(f"{label:>12} epoch {epoch + 1}: train loss {total / max(count, 1):.2f}")
    seconds = time.perf_counter() - t0
    net = model._module if hasattr(model, "_module") else model
    spent = float("inf") if engine is None else float(engine.get_epsilon(delta))
    if engine is not None:
        steps = len(engine.accountant.history) and sum(h[2] for h in engine.accountant.history)
    rng = np.random.default_rng(seed)
    i_tr = rng.choice(n, size=min(n_probe, n), replace=False)
    i_te = rng.choice(len(x_test), size=min(n_probe, len(x_test)), replace=False)
    l_tr = per_example_losses(net, np.asarray(x_train)[i_tr], np.asarray(y_train)[i_tr])
    l_te = per_example_losses(net, np.asarray(x_test)[i_te], np.asarray(y_test)[i_te])
    return DPResult(
        target_epsilon=float("inf") if epsilon is None else float(epsilon), epsilon=spent, delta=delta,
        noise_multiplier=sigma, max_grad_norm=max_grad_norm if epsilon is not None else float("inf"),
        epochs=epochs, steps=int(steps), test_accuracy=accuracy(net, x_test, y_test),
        train_loss=float(l_tr.mean()), test_loss=float(l_te.mean()), membership_auc=membership_auc(l_tr, l_te),
        seconds=seconds)
