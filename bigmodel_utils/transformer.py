"""The Transformer from scratch in PyTorch: attention, blocks, a character-level
decoder-only language model, its text, training loop, n-gram baselines and sampling.

Why this module exists: the article names BERT and GPT but never shows the
architecture behind them. The Transformer chapter builds it from its parts and
checks each part numerically (attention against ``torch.nn.MultiheadAttention``,
the causal mask by gradients), then trains a small GPT-like model on a real text.
Everything reusable is here, so the notebook shows definitions and results.

The text is CPython's own reference documentation as shipped inside the
interpreter (``pydoc_data/topics.py``, the text that ``help("assert")`` prints),
licensed under the PSF License Agreement, which permits use, reproduction and
derivative works provided the PSF copyright notice is kept (see
:data:`TEXT_SOURCE`). It is read offline and checked by SHA-256.
"""
from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models import load_checkpoint, save_checkpoint

TEXT_SOURCE = {
    "name": "Python 3.11.7 reference documentation (help topics)",
    "module": "pydoc_data.topics",
    "licence": "PSF License Agreement for Python 3.11 (Copyright (c) 2001-2023 Python Software Foundation; "
               "All Rights Reserved); permits use, reproduction and derivative works with this notice kept",
    # SHA-256 of the file pydoc_data/topics.py of CPython 3.11.7 and of the text built from it
    "file_sha256": "abaa56a64551d8eead1b19cbae3c6db443f99f0cab81df07bed3cb75c0db9346",
    "text_sha256": "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4",
}


THREADS = 1  # torch threads used by this module's loops (see :class:`torch_threads`)


class torch_threads:
    """Context manager: run torch with ``n`` intra-op threads, then restore the previous count.

    The models here are small (widths of 64-128), so each step is a set of small
    matrix products. Measured on the book's 2-core machine while other processes
    were busy, one training step of the chapter's model took about 0.2 s with one
    thread and 0.5 s with two, and sampling a character 3 ms against 15 ms: the two
    threads mostly waited for each other. One thread also gives the same numbers on
    every machine.
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


class TextIntegrityError(ValueError):
    """The text on disk is not the verified one (another Python version or a damaged file)."""


# --------------------------------------------------------------------------- text and vocabulary

def load_python_docs(path: str | Path | None = None) -> str:
    """The help-topic texts of CPython 3.11.7, joined in sorted topic order, SHA-256 verified.

    ``path`` defaults to the ``pydoc_data/topics.py`` of the running interpreter.
    The file's checksum is verified before it is read, and the joined text's after;
    any other file (for example from another Python patch release, whose
    documentation differs) raises :class:`TextIntegrityError` that says so.
    """
    import importlib.util

    if path is None:
        spec = importlib.util.find_spec(TEXT_SOURCE["module"])
        if spec is None or spec.origin is None:
            raise FileNotFoundError("this Python has no pydoc_data.topics module")
        path = spec.origin
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != TEXT_SOURCE["file_sha256"]:
        raise TextIntegrityError(
            f"{path} has SHA-256 {got}, expected {TEXT_SOURCE['file_sha256']} (the file of CPython 3.11.7; "
            f"this is Python {sys.version.split()[0]}). Run the chapter with the project's Python 3.11.7.")
    namespace: dict = {}
    exec(compile(data, str(path), "exec"), namespace)  # a module that defines one dict of strings
    topics = namespace["topics"]
    text = "\n".join(topics[k] for k in sorted(topics))
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != TEXT_SOURCE["text_sha256"]:
        raise TextIntegrityError("the joined help text does not have the expected SHA-256")
    return text


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: ``encode`` maps text to integer ids, ``decode`` back."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """All distinct characters of ``text``, sorted by code point."""
        if not text:
            raise ValueError("cannot build a vocabulary from an empty text")
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown[:10]!r}")
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"ids must lie in [0, {len(self.chars)})")
        return "".join(self.chars[i] for i in ids)


def split_ids(ids: np.ndarray, fractions=(0.8, 0.1, 0.1)) -> tuple[np.ndarray, ...]:
    """Cut a sequence into contiguous consecutive parts (train, validation, test) by ``fractions``.

    Contiguous parts, not random characters: neighbouring characters are strongly
    dependent, so a random split would leak the validation text into training.
    """
    ids = np.asarray(ids)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions <= 0).any() or abs(fractions.sum() - 1) > 1e-9:
        raise ValueError("fractions must be at least two positive numbers summing to 1")
    cuts = np.round(np.cumsum(fractions)[:-1] * len(ids)).astype(int)
    parts = tuple(np.split(ids, cuts))
    if min(len(p) for p in parts) < 2:
        raise ValueError("every part needs at least two characters")
    return parts


# --------------------------------------------------------------------------- n-gram baselines

def ngram_nll(train_ids, eval_ids, vocab_size: int, order: int, alpha: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per character) of an additively smoothed n-gram model.

    ``order`` 0 is the uniform model (``ln V``), 1 the unigram, 2 the bigram, 3 the
    trigram. Counts come from ``train_ids``; ``alpha`` is added to every count
    (Laplace for 1). The targets scored are ``eval_ids[order - 1:]`` (every
    character that has a full context inside the evaluated text).
    """
    if vocab_size < 1:
        raise ValueError("vocab_size must be positive")
    if order < 0 or order > 3:
        raise ValueError(f"order must be 0, 1, 2 or 3, got {order}")
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    if order == 0:
        return math.log(vocab_size)
    train = np.asarray(train_ids, dtype=np.int64)
    test = np.asarray(eval_ids, dtype=np.int64)
    if len(train) < order or len(test) < order:
        raise ValueError("both texts must be at least as long as the order")
    if max(train.max(), test.max()) >= vocab_size or min(train.min(), test.min()) < 0:
        raise ValueError("ids outside the vocabulary")

    def grams(a):
        idx = np.zeros(len(a) - order + 1, dtype=np.int64)
        for k in range(order):
            idx = idx * vocab_size + a[k:len(a) - order + 1 + k]
        return idx

    counts = np.bincount(grams(train), minlength=vocab_size ** order).astype(float).reshape(-1, vocab_size)
    probs = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * vocab_size)
    g = grams(test)
    return float(-np.mean(np.log(probs[g // vocab_size, g % vocab_size])))


# --------------------------------------------------------------------------- attention

def causal_mask(length: int, device=None):
    """Boolean ``(length, length)`` mask, True where a query would look at a later position (forbidden)."""
    import torch

    if length < 1:
        raise ValueError("length must be positive")
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q kᵀ / √d) v for tensors ``(..., T, d)``; returns ``(output, weights)``.

    ``mask`` is boolean and broadcastable to ``(..., T_q, T_k)``; True forbids the
    pair (its score becomes −∞, so its weight and its gradient are exactly 0).
    """
    import torch

    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError("mask must be boolean (True = forbidden)")
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def _modules():
    import torch
    from torch import nn

    class MultiHeadSelfAttention(nn.Module):
        """Multi-head self-attention: one projection to queries, keys and values (laid out like
        ``nn.MultiheadAttention``'s ``in_proj_weight``), ``heads`` attentions of width d/heads, an output projection."""

        def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
            super().__init__()
            if d_model % heads:
                raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
            self.heads, self.d_model = heads, d_model
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.out = nn.Linear(d_model, d_model)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, causal: bool = False, return_weights: bool = False):
            b, t, d = x.shape
            q, k, v = self.qkv(x).split(d, dim=-1)
            q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
            mask = causal_mask(t, x.device) if causal else None
            y, w = scaled_dot_product_attention(q, k, v, mask)
            y = self.out(self.drop(y.transpose(1, 2).reshape(b, t, d)))
            return (y, w) if return_weights else y

    class Block(nn.Module):
        """A pre-norm decoder block: x + attention(LN(x)), then x + MLP(LN(x)) with a 4× GELU MLP."""

        def __init__(self, d_model: int, heads: int, dropout: float = 0.0):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.attn = MultiHeadSelfAttention(d_model, heads, dropout)
            self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                     nn.Dropout(dropout))

        def forward(self, x, causal: bool = True):
            x = x + self.attn(self.ln1(x), causal=causal)
            return x + self.mlp(self.ln2(x))

    class CharTransformer(nn.Module):
        """A decoder-only (GPT-like) character language model: embeddings + positions, blocks, LN, linear head."""

        def __init__(self, vocab_size, d_model, heads, layers, context, dropout=0.0, positions="sinusoidal"):
            super().__init__()
            self.config = dict(vocab_size=vocab_size, d_model=d_model, heads=heads, layers=layers, context=context,
                               dropout=dropout, positions=positions)
            self.embed = nn.Embedding(vocab_size, d_model)
            if positions == "learned":
                self.pos = nn.Parameter(torch.zeros(context, d_model))
                nn.init.normal_(self.pos, std=0.02)
            else:
                self.register_buffer("pos", sinusoidal_positions(context, d_model), persistent=False)
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block(d_model, heads, dropout) for _ in range(layers))
            self.ln = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab_size)

        def embed_tokens(self, idx):
            """Token embeddings plus positional encodings, shape ``(batch, T, d_model)``."""
            if idx.shape[1] > self.config["context"]:
                raise ValueError(f"sequence of {idx.shape[1]} tokens exceeds the context {self.config['context']}")
            return self.embed(idx) + self.pos[: idx.shape[1]]

        def from_embeddings(self, h, causal: bool = True):
            """Logits from already embedded inputs (used to take gradients with respect to positions)."""
            h = self.drop(h)
            for block in self.blocks:
                h = block(h, causal=causal)
            return self.head(self.ln(h))

        def forward(self, idx, causal: bool = True):
            return self.from_embeddings(self.embed_tokens(idx), causal=causal)

    return MultiHeadSelfAttention, Block, CharTransformer


def __getattr__(name):  # the torch classes are built on first use, so importing this module stays cheap
    if name in ("MultiHeadSelfAttention", "Block", "CharTransformer"):
        classes = dict(zip(("MultiHeadSelfAttention", "Block", "CharTransformer"), _modules()))
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def copy_from_torch_mha(mine, reference) -> None:
    """Copy the weights of a ``torch.nn.MultiheadAttention`` (with biases, same width) into ``mine``."""
    import torch

    if not isinstance(reference, torch.nn.MultiheadAttention):
        raise TypeError("reference must be a torch.nn.MultiheadAttention")
    if reference.embed_dim != mine.d_model or reference.num_heads != mine.heads:
        raise ValueError("the two attentions differ in width or number of heads")
    if reference.in_proj_weight is None or reference.in_proj_bias is None:
        raise ValueError("the reference needs a packed in_proj_weight and biases (kdim = vdim = embed_dim)")
    with torch.no_grad():
        mine.qkv.weight.copy_(reference.in_proj_weight)
        mine.qkv.bias.copy_(reference.in_proj_bias)
        mine.out.weight.copy_(reference.out_proj.weight)
        mine.out.bias.copy_(reference.out_proj.bias)


def sinusoidal_positions(length: int, d_model: int):
    """The sinusoidal positional encoding of Vaswani et al. (2017), shape ``(length, d_model)``.

    Column pairs (2i, 2i+1) hold sin and cos of ``pos / 10000^(2i/d)``, so each pair
    turns by a fixed angle per position and PE(pos + k) is a rotation of PE(pos).
    """
    import torch

    if length < 1 or d_model < 2 or d_model % 2:
        raise ValueError("length must be positive and d_model a positive even number")
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe.float()


def influence_matrix(fn, x, seed: int = 0) -> np.ndarray:
    """How much output position t depends on input position s: ``‖∂(r·fn(x)[:, t])/∂x[:, s]‖``.

    ``fn`` maps ``(batch, T, d)`` to ``(batch, T, k)``; ``r`` is a fixed random
    vector (so the outputs do not cancel). Returns a ``(T, T)`` array, rows are
    outputs, columns inputs. Under a causal mask everything above the diagonal
    must be exactly 0.
    """
    import torch

    if x.ndim != 3:
        raise ValueError(f"expected (batch, T, d) inputs, got {tuple(x.shape)}")
    x = x.detach().clone().requires_grad_(True)
    with torch_threads():
        out = fn(x)
        if out.ndim != 3 or out.shape[:2] != x.shape[:2]:
            raise ValueError("fn must return (batch, T, k) for (batch, T, d) inputs")
        r = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
        rows = []
        for t in range(out.shape[1]):
            (g,) = torch.autograd.grad((out[:, t] @ r).sum(), x, retain_graph=True)
            rows.append(g.norm(dim=(0, 2)))
    return torch.stack(rows).detach().numpy()


# --------------------------------------------------------------------------- model, training, evaluation

def build_char_transformer(vocab_size: int, d_model: int = 128, heads: int = 4, layers: int = 3, context: int = 128,
                           dropout: float = 0.0, positions: str = "sinusoidal", seed: int | None = None):
    """Build a :class:`CharTransformer` (``positions``: ``"sinusoidal"`` or ``"learned"``)."""
    import torch

    if min(vocab_size, d_model, heads, layers, context) < 1:
        raise ValueError("vocab_size, d_model, heads, layers and context must be positive")
    if positions not in ("sinusoidal", "learned"):
        raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {positions!r}")
    if d_model % heads or d_model % 2:
        raise ValueError("d_model must be even and divisible by heads")
    if not 0 <= dropout < 1:
        raise ValueError("dropout must lie in [0, 1)")
    if seed is not None:
        torch.manual_seed(seed)
    return __getattr__("CharTransformer")(vocab_size, d_model, heads, layers, context, dropout, positions)


def count_parameters(model) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def sample_windows(ids: np.ndarray, context: int, batch_size: int, rng: np.random.Generator):
    """A random batch of ``(inputs, targets)`` windows of length ``context``; targets are shifted by one."""
    import torch

    if len(ids) <= context:
        raise ValueError(f"the text ({len(ids)} ids) must be longer than the context ({context})")
    starts = rng.integers(0, len(ids) - context, batch_size)
    idx = starts[:, None] + np.arange(context + 1)
    w = torch.from_numpy(np.asarray(ids, dtype=np.int64)[idx])
    return w[:, :-1], w[:, 1:]


def evaluate_lm(model, ids, batch_size: int = 64) -> float:
    """Mean negative log-likelihood in nats per character of ``ids[1:]`` given everything before.

    Sliding windows of the model's context with a stride of half a context; each
    target is scored once, with at least half a context of history (except at the
    start). Deterministic, in evaluation mode, without gradients.
    """
    import torch
    import torch.nn.functional as F

    ids = np.asarray(ids, dtype=np.int64)
    T = model.config["context"]
    if len(ids) <= T:
        raise ValueError(f"the text ({len(ids)} ids) must be longer than the context ({T})")
    m = len(ids) - 1  # number of targets
    starts = list(range(0, m - T + 1, T // 2))
    if starts[-1] != m - T:
        starts.append(m - T)
    first_scored = [0] + [starts[i - 1] + T for i in range(1, len(starts))]  # first target not scored before
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), torch_threads():
        for b in range(0, len(starts), batch_size):
            s = np.asarray(starts[b:b + batch_size])
            w = torch.from_numpy(ids[s[:, None] + np.arange(T + 1)])
            nll = F.cross_entropy(model(w[:, :-1]).transpose(1, 2), w[:, 1:], reduction="none")
            for row, a in enumerate(s):
                keep = nll[row, first_scored[b + row] - a:]
                total, count = total + float(keep.sum()), count + keep.numel()
    assert count == m, (count, m)
    return total / count


def fit_lm(model, train_ids, val_ids, *, steps: int, batch_size: int = 32, learning_rate: float = 3e-3,
           warmup: int = 50, weight_decay: float = 0.01, clip_norm: float = 1.0, eval_every: int = 50,
           eval_batches: int = 8, seed: int = 0, progress: bool = True, label: str = ""):
    """Train a language model on random windows of ``train_ids`` (AdamW, linear warm-up then cosine
    decay to 10 %, gradient clipping) and monitor ``val_ids``.

    Every ``eval_every`` steps (and at the end) it records the mean training loss
    since the last record and the validation loss on a fixed set of
    ``eval_batches`` × ``batch_size`` windows (the same windows every time). The
    validation text only monitors; report final results with :func:`evaluate_lm`
    on held-out text. Progress is a tqdm bar on stderr. Returns a DataFrame with
    columns ``step``, ``loss``, ``val_loss`` (nats per character).
    """
    import pandas as pd
    import torch
    from tqdm import tqdm

    if min(steps, batch_size, eval_every, eval_batches) < 1 or warmup < 0:
        raise ValueError("steps, batch_size, eval_every and eval_batches must be positive, warmup >= 0")
    T = model.config["context"]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    vrng = np.random.default_rng(seed + 1)
    val_batches = [sample_windows(val_ids, T, batch_size, vrng) for _ in range(eval_batches)]
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.99))

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        progress_frac = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    bar = tqdm(total=steps, desc=label or "training", unit="step", mininterval=2.0, file=sys.stderr,
               disable=not progress)
    with torch_threads():
        rows = _train_steps(model, opt, sched, train_ids, val_batches, T, steps, batch_size, clip_norm, eval_every,
                            rng, bar)
    bar.close()
    return pd.DataFrame(rows)


def _train_steps(model, opt, sched, train_ids, val_batches, T, steps, batch_size, clip_norm, eval_every, rng, bar):
    import torch
    import torch.nn.functional as F

    rows, running, seen = [], 0.0, 0
    for step in range(1, steps + 1):
        model.train()
        x, y = sample_windows(train_ids, T, batch_size, rng)
        loss = F.cross_entropy(model(x).transpose(1, 2), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        sched.step()
        running, seen = running + loss.item(), seen + 1
        bar.update(1)
        if step % eval_every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                val = np.mean([float(F.cross_entropy(model(a).transpose(1, 2), b)) for a, b in val_batches])
            rows.append({"step": step, "loss": running / seen, "val_loss": float(val)})
            running, seen = 0.0, 0
            bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", val=f"{val:.3f}")
    return rows


def generate(model, vocab: CharVocab, prompt: str, n_chars: int, temperature: float = 1.0, seed: int = 0) -> str:
    """Continue ``prompt`` by ``n_chars`` characters sampled from the model (fixed ``seed``, so repeatable).

    Each step feeds the last ``context`` characters, divides the logits of the
    next character by ``temperature`` (lower = more conservative) and samples.
    """
    import torch

    if n_chars < 0:
        raise ValueError("n_chars must be non-negative")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    if not prompt:
        raise ValueError("give a non-empty prompt")
    gen = torch.Generator().manual_seed(seed)
    ids = torch.from_numpy(vocab.encode(prompt))[None]
    T = model.config["context"]
    model.eval()
    with torch.no_grad(), torch_threads():
        for _ in range(n_chars):
            logits = model(ids[:, -T:])[0, -1] / temperature
            nxt = torch.multinomial(torch.softmax(logits.double(), dim=-1), 1, generator=gen)
            ids = torch.cat([ids, nxt[None]], dim=1)
    return vocab.decode(ids[0, len(prompt):].numpy())


def save_model(model, vocab: CharVocab, path) -> Path:
    """Save weights, the settings needed to rebuild the model, and the vocabulary (no pickled code)."""
    if not hasattr(model, "config"):
        raise ValueError("only models built by build_char_transformer can be saved this way")
    if len(vocab) != model.config["vocab_size"]:
        raise ValueError("the vocabulary does not match the model")
    return save_checkpoint(path, describe=model.config, config=dict(model.config), chars=list(vocab.chars),
                           state=model.state_dict())


def load_model(path):
    """Rebuild a model saved by :func:`save_model`; returns ``(model, vocab)``, the model in eval mode."""
    saved = load_checkpoint(path, "save a model first with transformer.save_model")
    model = build_char_transformer(**saved["config"])
    model.load_state_dict(saved["state"])
    model.eval()
    return model, CharVocab(tuple(saved["chars"]))
