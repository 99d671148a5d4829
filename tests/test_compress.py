import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bigmodel_utils import compress as c
from bigmodel_utils.fastpath import ArticleCNN


@pytest.fixture
def net():
    torch.manual_seed(0)
    return ArticleCNN().eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)


def test_trained_fast_cnn_caches_and_reloads_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    a = c.trained_fast_cnn(epochs=0.5, n_train=512, seed=1)
    files = list(tmp_path.glob("fast_cnn_*.pt"))
    assert len(files) == 1 and not a.training
    b = c.trained_fast_cnn(epochs=0.5, n_train=512, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture
def quick_training(monkeypatch):
    """train_fast replaced by a deterministic nudge of the weights, MNIST by 64 blank images; counts calls."""
    from bigmodel_utils import data

    calls = []

    def fake_train(model, *args, seed, **kw):
        calls.append(seed)
        with torch.no_grad():
            for q in model.parameters():
                q.add_(0.01)

    x, y = np.zeros((64, 28, 28), np.uint8), np.arange(64, dtype=np.uint8) % 10
    monkeypatch.setattr(c, "train_fast", fake_train)
    monkeypatch.setattr(data, "load_mnist", lambda **kw: ((x, y), (x[:8], y[:8])))
    return calls


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("damage", ["truncated", "empty", "no sidecar", "other weights"])
def test_trained_fast_cnn_retrains_a_corrupt_cache(tmp_path, monkeypatch, capsys, quick_training, damage):
    from bigmodel_utils.data import checksum_path, load_cached, save_cached

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    fresh = c.trained_fast_cnn(epochs=1, n_train=64, seed=3)
    path = tmp_path / "fast_cnn_e1_n64_s3.pt"
    assert _same(c.trained_fast_cnn(epochs=1, n_train=64, seed=3), fresh)
    assert quick_training == [3] and capsys.readouterr() == ("", "")
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no sidecar":
        checksum_path(path).unlink()
    else:  # a valid checkpoint with a valid checksum, but of another network
        save_cached(path, lambda tmp: torch.save(nn.Linear(2, 2).state_dict(), tmp))
    again = c.trained_fast_cnn(epochs=1, n_train=64, seed=3)
    out, err = capsys.readouterr()
    assert quick_training == [3, 3] and out == "" and err.count("\n") == 1
    assert f"cached model {path} is corrupt (" in err and "retraining it" in err
    if damage == "other weights":
        assert "does not load: RuntimeError" in err
    assert _same(again, fresh) and not again.training  # retrained from the same seeded start
    assert load_cached(path, lambda p: True) is True


def test_trained_fast_cnn_concurrent_writers_do_not_collide(tmp_path, monkeypatch, quick_training):
    import tempfile
    import threading

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    made, real, start = [], tempfile.mkstemp, threading.Barrier(2)

    def mkstemp(**kw):
        fd, name = real(**kw)
        made.append(name)
        if kw["prefix"] == ".fast_cnn_e1_n64_s5.pt.":
            start.wait(10)  # both writers hold their temporary weight files at the same time
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    results, errors = [], []

    def run():
        try:
            results.append(c.trained_fast_cnn(epochs=1, n_train=64, seed=5))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 2 and quick_training == [5, 5]
    weights = [m for m in made if re.fullmatch(r"\.fast_cnn_e1_n64_s5\.pt\.\w+\.tmp", Path(m).name)]
    assert len(weights) == 2 and len(set(weights)) == 2
    # threads share torch's global generator, so the two models may differ; the cache holds one of them, whole
    cached = c.trained_fast_cnn(epochs=1, n_train=64, seed=5)
    assert quick_training == [5, 5] and any(_same(cached, r) for r in results)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".lock", "fast_cnn_e1_n64_s5.pt", "fast_cnn_e1_n64_s5.pt.sha256"]  # no temporary file left


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(n_train=0), dict(n_train=70_000)])
def test_trained_fast_cnn_refuses_bad_settings(kw):
    with pytest.raises(ValueError):
        c.trained_fast_cnn(**({"epochs": 1} | kw), use_cache=False)


def test_mnist_tensors_shapes_and_errors():
    x, y, xc = c.mnist_tensors(n_test=100, n_calib=32)
    assert x.shape == (100, 1, 28, 28) and y.shape == (100,) and xc.shape == (32, 1, 28, 28)
    with pytest.raises(ValueError, match="n_test"):
        c.mnist_tensors(n_test=20_000)
    with pytest.raises(ValueError, match="n_calib"):
        c.mnist_tensors(n_calib=0)


def test_sizes_and_sparsity(net):
    assert 370_000 < c.state_dict_bytes(net) < 390_000  # 93,322 float32 numbers plus metadata
    assert c.weight_sparsity(net) == 0.0
    with pytest.raises(TypeError):
        c.state_dict_bytes("model")
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        c.weight_sparsity(nn.ReLU())


def test_dynamic_quantisation_touches_only_linear_layers(net, batch):
    q = c.quantize_dynamic_int8(net)
    layers = c.quantized_layers(q)
    assert layers == [("head.1", "dynamic int8 Linear"), ("head.3", "dynamic int8 Linear")]
    assert c.state_dict_bytes(q) < c.state_dict_bytes(net)
    assert isinstance(net.head[1], nn.Linear)  # original untouched
    x, _ = batch
    assert (q(x) - net(x)).abs().max() < 0.05


def test_static_quantisation_covers_convolutions(net, batch):
    x, _ = batch
    s = c.quantize_static_int8(net, x)
    kinds = {k for _, k in c.quantized_layers(s)}
    assert any("int8 Conv" in k for k in kinds) and any("int8 Linear" in k for k in kinds)
    assert c.state_dict_bytes(s) < 0.4 * c.state_dict_bytes(net)
    assert s(x).shape == (64, 10)
    with pytest.raises(TypeError):
        c.quantize_static_int8(nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="x_calib"):
        c.quantize_static_int8(net, x[0])


@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9])
def test_prune_global_reaches_the_sparsity(net, amount):
    p = c.prune_global(net, amount)
    assert c.weight_sparsity(p) == pytest.approx(amount, abs=1e-3)
    assert c.weight_sparsity(net) == 0.0
    assert not any("mask" in k for k in p.state_dict())


def test_prune_global_refuses_bad_amount(net):
    with pytest.raises(ValueError, match="amount"):
        c.prune_global(net, 1.0)


def test_fine_tune_keeps_zeros_and_learns(net, batch):
    x, y = batch
    p = c.prune_global(net, 0.8)
    loss = nn.CrossEntropyLoss()
    before = loss(p(x), y).item()
    t = c.fine_tune_masked(p, x, y, steps=30, batch_size=32, lr=3e-3)
    assert c.weight_sparsity(t) >= c.weight_sparsity(p) - 1e-9
    with torch.no_grad():
        assert loss(t(x), y).item() < before
    with pytest.raises(ValueError, match="batch_size"):
        c.fine_tune_masked(p, x[:8], y[:8], batch_size=32)
    with pytest.raises(ValueError, match="steps"):
        c.fine_tune_masked(p, x, y, steps=0, batch_size=32)


def test_sparsity_curve_columns(net, batch):
    x, y = batch
    df = c.sparsity_curve(net, [0.0, 0.5], x, y, x, y, steps=2, batch_size=32)
    assert list(df.columns) == ["sparsity", "accuracy_pruned", "accuracy_tuned"] and len(df) == 2
    assert list(c.sparsity_curve(net, [0.3], x, y).columns) == ["sparsity", "accuracy_pruned"]


def test_onnx_roundtrip_matches_torch(net, batch, tmp_path):
    x, _ = batch
    path = c.export_onnx(net, tmp_path / "m.onnx")
    o = c.OnnxModel(path)
    with torch.no_grad():
        assert (o(x) - net(x)).abs().max() < 1e-4
        assert o(x[:1]).shape == (1, 10)
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        c.OnnxModel(tmp_path / "missing.onnx")


def test_latency_and_comparison_table(net, batch):
    x, y = batch
    assert c.median_latency_ms(net, x[:1], repeats=3, warmup=1) > 0
    with pytest.raises(ValueError):
        c.median_latency_ms(net, x[:1], repeats=0)
    v = [c.Variant("a", net, 100), c.Variant("b", c.quantize_dynamic_int8(net), 50)]
    df = c.compare_variants(v, x, y, repeats=3, rounds=1)
    assert list(df.variant) == ["a", "b"] and df.size_ratio.tolist() == [1.0, 0.5]
    assert df.speedup.iloc[0] == 1.0 and df.test_accuracy.between(0, 1).all()
    with pytest.raises(ValueError):
        c.compare_variants([], x, y)


def test_compressed_bytes_rewards_zeros(net):
    assert c.compressed_bytes(c.prune_global(net, 0.9)) < 0.5 * c.compressed_bytes(net)
    with pytest.raises(ValueError, match="level"):
        c.compressed_bytes(net, level=10)
