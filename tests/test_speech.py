import hashlib
import shutil

import numpy as np
import pytest

from bigmodel_utils import speech

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (make setup)")


def test_missing_espeak_names_the_remedy(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(speech.EspeakNotFoundError, match=r"apt-get install espeak-ng.*make setup"):
        speech.espeak_path()
    with pytest.raises(speech.EspeakNotFoundError):
        speech.synthesise_wav("one")


@needs_espeak
def test_synthesis_is_deterministic_and_cached(tmp_path):
    a = speech.synthesise_wav("seven", "en-gb-x-rp+m3", rate=150, pitch=40)
    b = speech.synthesise_wav("seven", "en-gb-x-rp+m3", rate=150, pitch=40, cache=tmp_path)
    assert a[:4] == b"RIFF" and hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert len(list(tmp_path.glob("*.wav"))) == 1
    assert speech.synthesise_wav("seven", "en-gb-x-rp+m3", rate=150, pitch=40, cache=tmp_path) == a
    assert speech.synthesise_wav("seven", "en-gb-x-rp+f2", rate=150, pitch=40) != a
    w = speech.wav_to_array(a)
    assert w.dtype == np.float32 and w.ndim == 1 and 0.3 < w.size / speech.SAMPLE_RATE < 1.5
    assert np.abs(w).max() <= 1.0


@needs_espeak
def test_wav_cache_concurrent_writers_use_distinct_temp_files(tmp_path, monkeypatch):
    """build_corpus synthesises in threads of one process, so a pid in the temporary name is not enough."""
    import tempfile
    import threading

    made, real, start = [], tempfile.mkstemp, threading.Barrier(3)

    def mkstemp(**kw):
        fd, name = real(**kw)
        made.append(name)
        start.wait(10)  # all three writers hold their temporary file at once
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    out = []
    threads = [threading.Thread(target=lambda: out.append(speech.synthesise_wav("two", "en-us+m1", cache=tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and len(set(out)) == 1 and len(set(made)) == 3
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [out[0]]  # one whole WAV, no temporary file left


@needs_espeak
def test_wav_cache_write_failure_leaves_no_file(tmp_path, monkeypatch):
    import os

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        speech.synthesise_wav("two", "en-us+m1", cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


@needs_espeak
@pytest.mark.parametrize("voice", ["en-xx+m1", "en-gb+m1", "en-us+zz9", "en-us+m1+f2", "", 3])
def test_unknown_voices_refused(voice):
    with pytest.raises(ValueError, match="voice|accent"):
        speech.check_voice(voice)


@needs_espeak
@pytest.mark.parametrize("kwargs", [dict(text=""), dict(text="one", rate=10), dict(text="one", pitch=120)])
def test_bad_synthesis_arguments(kwargs):
    with pytest.raises(ValueError):
        speech.synthesise_wav(**kwargs)


@needs_espeak
def test_build_corpus_grid_and_voice_split(tmp_path):
    c = speech.build_corpus(accents=("en-us",), variants=("m1", "f1"), styles=((160, 50),),
                            words=("one", "two"), cache=tmp_path)
    assert len(c) == 4 and list(c.labels) == [0, 1, 0, 1] and len(c.sha256) == 64
    assert set(c.meta.voice) == {"en-us+m1", "en-us+f1"} and c.meta.sha256.is_unique
    again = speech.build_corpus(accents=("en-us",), variants=("m1", "f1"), styles=((160, 50),),
                                words=("one", "two"), cache=None)
    assert again.sha256 == c.sha256
    tr, te = speech.split_by_voice(c.meta, ["f1"])
    assert set(c.meta.voice[te]) == {"en-us+f1"} and not set(c.meta.voice[tr]) & set(c.meta.voice[te])
    with pytest.raises(ValueError):
        speech.split_by_voice(c.meta, ["m9"])
    with pytest.raises(ValueError):
        speech.split_by_voice(c.meta, ["m1", "f1"])
    with pytest.raises(ValueError):
        speech.build_corpus(styles=((160,),))


def test_augment_and_fix_length():
    rng = np.random.default_rng(0)
    w = np.sin(np.linspace(0, 100, 8000)).astype(np.float32)
    a = speech.augment(w, rng, snr_db=(20, 20), max_shift_s=0.05)
    assert a.shape == w.shape and a.dtype == np.float32 and not np.allclose(a, w)
    b = speech.augment(w, np.random.default_rng(0), snr_db=(20, 20), max_shift_s=0.05)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        speech.augment(np.zeros((2, 3)), rng)
    assert speech.fix_length(w, 1.0).shape == (16_000,) and speech.fix_length(w, 0.25).shape == (4_000,)


def test_features_model_training_save_load(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(8000) / speech.SAMPLE_RATE
    waves = [np.sin(2 * np.pi * (300 + 500 * k) * t + rng.uniform()).astype(np.float32) for k in (0, 1) for _ in range(8)]
    x = speech.mfcc_features(waves, seconds=0.5, n_mfcc=13)
    y = np.repeat([0, 1], 8)
    assert x.shape == (16, 13, 32) and x.dtype == np.float32
    model = speech.build_model(n_mfcc=13, n_classes=2, width=8)
    assert speech.count_parameters(model) > 0
    import torch

    threads = torch.get_num_threads()
    hist = speech.train_model(model, x, y, epochs=10, batch_size=8, learning_rate=1e-2, log=None)
    assert torch.get_num_threads() == threads
    assert len(hist) == 10 and hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["accuracy"] >= 0.9
    p = speech.predict_proba(model, x)
    assert p.shape == (16, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    path = speech.save_model(model, tmp_path / "m.pt", feature_args=dict(seconds=0.5, n_mfcc=13))
    again, fargs = speech.load_model(path)
    assert fargs == dict(seconds=0.5, n_mfcc=13)
    assert np.array_equal(speech.predict_proba(again, x), p)
    word, prob = speech.recognise(again, waves[0], fargs)
    assert word in speech.DIGIT_WORDS[:2] and 0 < prob <= 1


def test_bad_model_inputs(tmp_path):
    model = speech.build_model(n_mfcc=13, n_classes=2, width=8)
    with pytest.raises(ValueError, match="MFCCs"):
        speech.predict_proba(model, np.zeros((2, 20, 10)))
    with pytest.raises(ValueError, match="mfcc_features"):
        speech.predict_proba(model, np.zeros((13, 10)))
    with pytest.raises(ValueError, match="one per example"):
        speech.train_model(model, np.zeros((3, 13, 10)), [0, 1], log=None)
    with pytest.raises(ValueError):
        speech.build_model(n_mfcc=2)
    with pytest.raises(ValueError):
        speech.recognise(model, np.zeros(10))
    with pytest.raises(FileNotFoundError, match="save_model"):
        speech.load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError):
        speech.mfcc_features([])


def test_waveform_mfcc_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.zeros(8000, dtype=np.float32)
    fig = speech.waveform_mfcc_figure(w, speech.mfcc_features([w], seconds=0.5)[0], "test")
    assert len(fig.axes) == 3
    plt.close(fig)
