"""Spoken-digit recognition on speech synthesised offline with espeak-ng (语音识别).

Why a module: the speech chapter needs a reproducible audio corpus without the
network. The Debian package ``espeak-ng`` (a formant synthesiser) speaks the ten
English digit words in many voices, rates and pitches; this module calls it,
caches and hashes the WAV files, turns them into fixed-size MFCC features, and
provides a small CNN with its save / load / recognise functions.

A *voice* here is an espeak-ng accent plus a voice variant, e.g. ``en-gb+m3``.
Splits are made by voice variant, so held-out voices are never heard in training.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .data import atomic_write
from .models import load_checkpoint, save_checkpoint
from .sequences import torch_threads

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Accents are voice *files* (``en`` is British English). Language codes such as ``en-gb`` also
# select a voice but silently ignore a ``+variant``, and ``en-us-nyc`` sounds like ``en-us``
# for these words, so neither is used.
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050  # espeak-ng's native output rate
INSTALL_HINT = ("install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu) or run `make setup`, "
                "which installs the book's system packages")


class EspeakNotFoundError(RuntimeError):
    """Raised when the ``espeak-ng`` program is not on the PATH."""


def espeak_path() -> str:
    """Full path of the ``espeak-ng`` program; a clear error saying how to install it otherwise."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFoundError(f"the speech synthesiser `espeak-ng` was not found on the PATH; {INSTALL_HINT}.")
    return path


@lru_cache(maxsize=4)
def _known_voices(exe: str) -> tuple[frozenset, frozenset]:
    out = subprocess.run([exe, "--voices"], capture_output=True, text=True, check=True).stdout
    accents = {line.split()[4].split("/")[-1].lower() for line in out.splitlines()[1:] if len(line.split()) > 4}
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, check=True).stdout
    variants = {line.split()[4].split("/")[-1] for line in out.splitlines()[1:] if len(line.split()) > 4}
    return frozenset(accents), frozenset(variants)


def check_voice(voice: str) -> str:
    """Return ``voice`` if espeak-ng knows its accent and variant. (espeak-ng itself silently falls
    back to its default voice for unknown names, which would corrupt a voice split.)"""
    if not isinstance(voice, str) or voice.count("+") > 1 or not voice:
        raise ValueError(f"a voice is 'accent' or 'accent+variant', e.g. 'en-gb+m3'; got {voice!r}")
    accent, _, variant = voice.partition("+")
    accents, variants = _known_voices(espeak_path())
    if accent not in accents:
        raise ValueError(f"espeak-ng has no voice file for the accent {accent!r} (language codes such as 'en-gb' "
                         f"ignore the variant); use a file name from `espeak-ng --voices=en`, e.g. {ACCENTS[:3]}")
    if variant and variant not in variants:
        raise ValueError(f"espeak-ng has no voice variant {variant!r}; see `espeak-ng --voices=variant` "
                         f"(e.g. {VARIANTS[:3]})")
    return voice


def speech_cache_dir() -> Path:
    """Folder for the synthesised WAV files (``$BIGMODEL_CACHE/speech`` or ``_build/cache/speech``)."""
    from .models import cache_dir

    return Path(cache_dir()) / "speech"


def synthesise_wav(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50,
                   cache: str | os.PathLike | None = None) -> bytes:
    """WAV bytes (22,050 Hz, 16-bit mono) of espeak-ng speaking ``text``.

    ``rate`` is in words per minute (80–450), ``pitch`` 0–99. With ``cache`` (a folder) the file is
    kept there and reused. The output is deterministic: same arguments, same bytes.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not 80 <= int(rate) <= 450 or not 0 <= int(pitch) <= 99:
        raise ValueError(f"rate must be 80-450 words/minute and pitch 0-99, got rate={rate}, pitch={pitch}")
    exe = espeak_path()
    check_voice(voice)
    path = None
    if cache is not None:
        key = hashlib.sha256(f"{text}|{voice}|{rate}|{pitch}".encode()).hexdigest()[:20]
        path = Path(cache) / f"{voice.replace('+', '_')}_{rate}_{pitch}_{key}.wav"
        if path.exists():
            return path.read_bytes()
    proc = subprocess.run([exe, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "--stdout", text],
                          capture_output=True, check=True)
    data = proc.stdout
    if path is not None:
        atomic_write(path, data)  # unique temporary name: threads of build_corpus share one pid
    return data


def wav_to_array(data: bytes, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode WAV bytes to float32 samples in [-1, 1], resampled to ``target_rate`` (polyphase filter)."""
    import soundfile as sf
    from math import gcd
    from scipy.signal import resample_poly

    wave, rate = sf.read(io.BytesIO(data), dtype="float32")
    if wave.ndim != 1:
        wave = wave.mean(axis=1)
    if rate != target_rate:
        g = gcd(rate, target_rate)
        wave = resample_poly(wave, target_rate // g, rate // g).astype(np.float32)
    return wave


@dataclass
class Corpus:
    """Synthesised utterances: 16 kHz waves, digit labels, and who said them how."""

    waves: list
    labels: np.ndarray
    meta: "object"  # pandas DataFrame: word, label, voice, accent, variant, rate, pitch
    sha256: str  # of all WAV files in order: identical runs give identical corpora

    def __len__(self) -> int:
        return len(self.waves)


STYLES = ((130, 35), (165, 50), (200, 65))  # (rate in words/minute, pitch 0-99): slow-low, neutral, fast-high


def build_corpus(accents=ACCENTS, variants=VARIANTS, styles=((165, 50),), words=DIGIT_WORDS,
                 cache: str | os.PathLike | None = None, workers: int = 2) -> Corpus:
    """Synthesise every word in every voice ``accent+variant`` and every speaking style
    ``(rate, pitch)``: len(accents) x len(variants) x len(styles) x len(words) utterances."""
    import pandas as pd

    if not accents or not variants or not styles or not words:
        raise ValueError("accents, variants, styles and words must all be non-empty")
    styles = [tuple(s) for s in styles]
    if any(len(s) != 2 for s in styles):
        raise ValueError(f"each style is a (rate, pitch) pair, got {styles}")
    voices = [f"{a}+{v}" for a in accents for v in variants]
    for v in voices:
        check_voice(v)
    rows = [dict(word=w, label=i, voice=f"{a}+{v}", accent=a, variant=v, rate=r, pitch=p)
            for a in accents for v in variants for r, p in styles for i, w in enumerate(words)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        blobs = list(pool.map(lambda r: synthesise_wav(r["word"], r["voice"], r["rate"], r["pitch"], cache), rows))
    digest = hashlib.sha256()
    for b in blobs:
        digest.update(hashlib.sha256(b).digest())  # order-sensitive hash of the per-file hashes
    waves = [wav_to_array(b) for b in blobs]
    meta = pd.DataFrame(rows)
    meta["sha256"] = [hashlib.sha256(b).hexdigest() for b in blobs]
    meta["seconds"] = [len(w) / SAMPLE_RATE for w in waves]
    return Corpus(waves=waves, labels=meta.label.to_numpy(np.int64), meta=meta, sha256=digest.hexdigest())


def split_by_voice(meta, held_out_variants) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): test holds every utterance whose voice variant is in ``held_out_variants``,
    so no held-out voice is ever heard in training."""
    held = set(held_out_variants)
    known = set(meta["variant"])
    if not held or not held <= known:
        raise ValueError(f"held_out_variants must be a non-empty subset of the corpus variants {sorted(known)}, "
                         f"got {sorted(held)}")
    if held == known:
        raise ValueError("holding out every variant leaves nothing to train on")
    mask = meta["variant"].isin(held).to_numpy()
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def augment(wave, rng: np.random.Generator, snr_db=(15.0, 35.0), max_shift_s: float = 0.1) -> np.ndarray:
    """A copy of ``wave`` shifted in time by up to ``max_shift_s`` (zeros fill in) with white noise
    added at a signal-to-noise ratio drawn from ``snr_db``."""
    w = np.asarray(wave, dtype=np.float32)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"wave must be a non-empty 1-D array, got shape {w.shape}")
    shift = int(rng.integers(-int(max_shift_s * SAMPLE_RATE), int(max_shift_s * SAMPLE_RATE) + 1))
    out = np.zeros_like(w)
    if shift >= 0:
        out[shift:] = w[:w.size - shift]
    else:
        out[:shift] = w[-shift:]
    power = float(np.mean(w ** 2)) or 1e-12
    snr = rng.uniform(*snr_db)
    noise = rng.standard_normal(w.size).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
    return out + noise


def fix_length(wave, seconds: float) -> np.ndarray:
    """Trim or zero-pad ``wave`` (at 16 kHz) to exactly ``seconds``."""
    n = int(round(seconds * SAMPLE_RATE))
    w = np.asarray(wave, dtype=np.float32)[:n]
    return np.pad(w, (0, n - w.size))


def mfcc_features(waves, seconds: float = 1.2, n_mfcc: int = 20, hop: int = 256, n_fft: int = 512) -> np.ndarray:
    """MFCCs of each wave, padded/trimmed to ``seconds`` first: float32 array (N, n_mfcc, frames)."""
    import warnings

    if isinstance(waves, np.ndarray) and waves.ndim == 1:
        waves = [waves]
    if len(waves) == 0:
        raise ValueError("no waves given")
    batch = np.stack([fix_length(w, seconds) for w in waves])
    with warnings.catch_warnings():  # librosa's lazy imports pull in tqdm, which warns in notebooks
        warnings.filterwarnings("ignore", message="IProgress not found")
        import librosa

        feats = librosa.feature.mfcc(y=batch, sr=SAMPLE_RATE, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop,
                                     n_mels=40, fmax=SAMPLE_RATE / 2)
    return feats.astype(np.float32)


def _torch_model_class():
    import torch
    from torch import nn

    class SpeechCNN(nn.Module):
        """A 1-D (temporal) CNN: the MFCCs are the input channels, three convolution blocks slide
        along time, global average pooling makes it indifferent to where the word sits in the window.
        The input normalisation (per-coefficient mean and std of the training set) is part of the model."""

        def __init__(self, n_mfcc: int = 20, n_classes: int = 10, width: int = 48):
            super().__init__()
            self.config = dict(n_mfcc=n_mfcc, n_classes=n_classes, width=width)
            self.register_buffer("mean", torch.zeros(1, n_mfcc, 1))
            self.register_buffer("std", torch.ones(1, n_mfcc, 1))
            c = width
            self.features = nn.Sequential(
                nn.Conv1d(n_mfcc, c, 5, padding=2), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(c, c, 5, padding=2), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(c, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU(),
                nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.2))
            self.classifier = nn.Linear(c, n_classes)

        def forward(self, x):
            return self.classifier(self.features((x - self.mean) / self.std))

    return SpeechCNN


def build_model(n_mfcc: int = 20, n_classes: int = 10, width: int = 48):
    """A small temporal CNN over MFCC sequences (about 23,000 parameters at the defaults)."""
    if n_mfcc < 4 or n_classes < 2 or width < 4:
        raise ValueError("need n_mfcc >= 4, n_classes >= 2 and width >= 4")
    return _torch_model_class()(n_mfcc, n_classes, width)


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _check_xy(features, labels=None):
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"features must be (N, n_mfcc, frames) from mfcc_features(), got shape {x.shape}")
    if labels is None:
        return x, None
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must be one per example: {y.shape} vs {x.shape[0]} examples")
    return x, y


def train_model(model, features, labels, *, epochs: int = 10, batch_size: int = 64, learning_rate: float = 3e-3,
                seed: int = 0, log=print, threads: int = 1) -> list[dict]:
    """Fit with Adam and cross-entropy; sets the model's normalisation from ``features`` first.
    Returns per-epoch loss and training accuracy (printed through ``log`` unless it is None)."""
    x, y = _check_xy(features, labels)
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    with torch_threads(threads):
        return _train(model, x, y, epochs, batch_size, learning_rate, seed, log)


def _train(model, x, y, epochs, batch_size, learning_rate, seed, log):
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(x.mean(axis=(0, 2))).view(1, -1, 1))
        model.std.copy_(torch.from_numpy(x.std(axis=(0, 2)) + 1e-5).view(1, -1, 1))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=epochs * -(-len(y) // batch_size))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total, correct = 0.0, 0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            logits = model(xt[idx])
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yt[idx]).sum())
        history.append(dict(epoch=epoch + 1, loss=total / len(y), accuracy=correct / len(y)))
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f}, training accuracy {history[-1]['accuracy']:.4f}")
    model.eval()
    return history


def predict_proba(model, features, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, n_classes) in evaluation mode."""
    import torch

    x, _ = _check_xy(features)
    n_mfcc = model.config["n_mfcc"]
    if x.shape[1] != n_mfcc:
        raise ValueError(f"model expects {n_mfcc} MFCCs per frame, features have {x.shape[1]}")
    model.eval()
    with torch.no_grad(), torch_threads(1):
        out = [torch.softmax(model(torch.from_numpy(x[i:i + batch_size])), 1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def save_model(model, path, *, feature_args: dict | None = None) -> Path:
    """Save weights, normalisation, architecture and feature settings to one file."""
    return save_checkpoint(path, state_dict=model.state_dict(), config=dict(model.config),
                           feature_args=dict(feature_args or {}), words=list(DIGIT_WORDS))


def load_model(path):
    """Rebuild the model saved by :func:`save_model` (weights only; no code is unpickled).
    Returns (model, feature_args)."""
    blob = load_checkpoint(path, "create one with speech.save_model()")
    model = build_model(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, blob["feature_args"]


def recognise(model, wave, feature_args: dict | None = None) -> tuple[str, float]:
    """Recognise one 16 kHz utterance: (digit word, probability)."""
    w = np.asarray(wave, dtype=np.float32)
    if w.ndim != 1 or w.size < SAMPLE_RATE // 20:
        raise ValueError(f"wave must be a 1-D array of at least 0.05 s at {SAMPLE_RATE} Hz, got shape {w.shape}")
    p = predict_proba(model, mfcc_features([w], **(feature_args or {})))[0]
    k = int(p.argmax())
    return DIGIT_WORDS[k], float(p[k])


def waveform_mfcc_figure(wave, features, title: str, hop: int = 256):
    """Waveform (top) and its MFCCs (bottom) of one utterance."""
    import matplotlib.pyplot as plt

    from . import plots

    w = np.asarray(wave)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6.5, 4.6), gridspec_kw=dict(height_ratios=[1, 1.3]))
    a1.plot(np.arange(w.size) / SAMPLE_RATE, w, color=plots.OKABE_ITO[5], linewidth=0.6)
    a1.set(title=title, xlabel="time (s)", ylabel="amplitude")
    im = a2.imshow(features, origin="lower", aspect="auto", cmap="Greys",
                   extent=(0, features.shape[1] * hop / SAMPLE_RATE, -0.5, features.shape[0] - 0.5))
    a2.set(xlabel="time (s), padded to a fixed length", ylabel="MFCC index")
    a2.grid(False)
    fig.colorbar(im, ax=a2, label="coefficient value")
    fig.tight_layout()
    return fig
