"""The article's CNN in plain PyTorch, and the book's fastest way to train it.

Keras 3 on the torch backend is convenient but adds per-step overhead. For the
benchmarks (``bench/``), for data-parallel training and for GPU runs, this module
gives the *same* network (93,322 parameters, same layers and shapes) as a plain
``torch.nn.Module``, a loader that moves whole batches at once, and a trainer that
uses what measurably helps on a CPU: ``channels_last`` memory format, larger
batches and a one-cycle learning-rate schedule (Smith & Topin, 2019).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

TRAIN_FLOP_PER_IMAGE = 16.4e6  # forward + backward of the article's CNN on one 28×28 image


class ArticleCNN(nn.Module):
    """conv32-pool-conv64-pool-conv64-dense64-dense10, as in the article (logits out, no softmax)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected a batch of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def from_keras(keras_model) -> ArticleCNN:
    """Copy the weights of ``models.build_article_cnn()`` into an :class:`ArticleCNN`.

    Keras stores conv kernels as (kh, kw, in, out) and flattens feature maps in
    (height, width, channel) order; torch uses (out, in, kh, kw) and (channel,
    height, width). The permutations below make both networks the same function.
    """
    convs = [l for l in keras_model.layers if type(l).__name__ == "Conv2D"]
    denses = [l for l in keras_model.layers if type(l).__name__ == "Dense"]
    if len(convs) != 3 or len(denses) != 2:
        raise ValueError("expected the article's CNN: 3 Conv2D and 2 Dense layers")
    net = ArticleCNN(n_classes=denses[-1].units)
    tconvs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    tdense = [m for m in net.head if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for k, t in zip(convs, tconvs):
            w, b = (np.asarray(v) for v in k.get_weights())
            t.weight.copy_(torch.from_numpy(w.transpose(3, 2, 0, 1).copy()))
            t.bias.copy_(torch.from_numpy(b))
        w, b = (np.asarray(v) for v in denses[0].get_weights())  # (576, 64), rows in (h, w, c) order
        w = w.reshape(3, 3, 64, -1).transpose(2, 0, 1, 3).reshape(576, -1)  # rows in (c, h, w) order
        tdense[0].weight.copy_(torch.from_numpy(w.T.copy()))
        tdense[0].bias.copy_(torch.from_numpy(b))
        w, b = (np.asarray(v) for v in denses[1].get_weights())
        tdense[1].weight.copy_(torch.from_numpy(w.T.copy()))
        tdense[1].bias.copy_(torch.from_numpy(b))
    return net


def to_tensor(images: np.ndarray, device: str = "cpu", channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, 28, 28) images → float32 (N, 1, 28, 28) in [0, 1] on ``device``."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    x = torch.from_numpy(images).to(device).float().div_(255.0).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of correct argmax predictions (model switched to eval mode)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(x)


@dataclass
class FastRun:
    """What :func:`train_fast` measured: per-checkpoint training seconds and accuracy."""

    images_per_second: float = 0.0
    checkpoints: list = field(default_factory=list)  # (epoch fraction, train seconds, accuracy)

    def time_to(self, target: float) -> float | None:
        """Training seconds until the evaluated accuracy first reached ``target`` (None: never)."""
        return next((s for _, s, a in self.checkpoints if a >= target), None)


def train_fast(model: ArticleCNN, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor, *,
               epochs: float = 2, batch_size: int = 256, max_lr: float = 4e-3, evals_per_epoch: int = 2,
               seed: int = 0, progress: bool = True) -> FastRun:
    """Adam with a one-cycle schedule; evaluates ``evals_per_epoch`` times per epoch.

    Evaluation time is excluded from the training seconds, so ``time_to`` is a
    pure time-to-accuracy. ``epochs`` may be fractional (e.g. 1.5).
    """
    from tqdm import tqdm

    if len(x) != len(y) or len(x_eval) != len(y_eval):
        raise ValueError("images and labels differ in length")
    if epochs <= 0 or batch_size < 1 or evals_per_epoch < 1:
        raise ValueError("epochs, batch_size and evals_per_epoch must be positive")
    steps_per_epoch = len(x) // batch_size
    total = max(1, int(round(epochs * steps_per_epoch)))
    every = max(1, steps_per_epoch // evals_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=max_lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total)
    loss_fn = nn.CrossEntropyLoss()
    run, trained, step, order = FastRun(), 0.0, 0, torch.empty(0, dtype=torch.long)
    bar = tqdm(total=total, desc="fast path", unit="batch", mininterval=2.0, disable=not progress)
    while step < total:
        if (step % steps_per_epoch) == 0:
            order = torch.randperm(len(x), generator=gen).to(x.device)
        model.train()
        t0 = time.perf_counter()
        idx = order[(step % steps_per_epoch) * batch_size : (step % steps_per_epoch + 1) * batch_size]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        trained += time.perf_counter() - t0
        step += 1
        bar.update(1)
        if step % every == 0 or step == total:
            run.checkpoints.append((step / steps_per_epoch, trained, accuracy(model, x_eval, y_eval)))
    bar.close()
    run.images_per_second = step * batch_size / trained
    return run
