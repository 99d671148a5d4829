from pathlib import Path

import numpy as np
import pytest

from bigmodel_utils.models import (
    ARTICLE_CNN_PARAMS,
    BadInputError,
    build_article_cnn,
    check_digit_images,
    layer_table,
    predict_digits,
)


@pytest.fixture(scope="module")
def cnn():
    from bigmodel_utils.devices import seed_everything

    seed_everything(0)
    return build_article_cnn()


def test_article_cnn_parameter_count(cnn):
    assert cnn.count_params() == ARTICLE_CNN_PARAMS == 93_322


def test_layer_table(cnn):
    t = layer_table(cnn)
    assert t["output shape"].tolist() == ["26×26×32", "13×13×32", "11×11×64", "5×5×64", "3×3×64", "576", "64", "10"]
    assert t["parameters"].sum() == 93_322


def test_builder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="height, width, channels"):
        build_article_cnn((28, 28))
    with pytest.raises(ValueError, match="n_classes"):
        build_article_cnn(n_classes=1)


def test_check_digit_images():
    one = np.zeros((28, 28), np.uint8)
    assert check_digit_images(one).shape == (1, 28, 28)
    assert check_digit_images(np.stack([one, one])).shape == (2, 28, 28)
    with pytest.raises(BadInputError, match="uint8"):
        check_digit_images(one.astype(np.float32))
    with pytest.raises(BadInputError, match=r"\(N, 28, 28\)"):
        check_digit_images(np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(BadInputError):
        check_digit_images(np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(BadInputError):
        check_digit_images(np.zeros((1, 28, 28, 1), np.uint8))


def test_predict_digits(cnn):
    labels, conf = predict_digits(cnn, np.zeros((3, 28, 28), np.uint8))
    assert labels.shape == conf.shape == (3,)
    assert ((0 <= labels) & (labels < 10)).all() and ((0 < conf) & (conf <= 1)).all()
    with pytest.raises(BadInputError):
        predict_digits(cnn, np.zeros((3, 28, 28), np.float64))


def test_trained_article_cnn_is_cached_and_identical(tmp_path, monkeypatch):
    from bigmodel_utils.data import load_mnist, prepare_images
    from bigmodel_utils.models import trained_article_cnn

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    fresh = trained_article_cnn(epochs=1, n_train=256, seed=0)
    assert list(tmp_path.glob("article_cnn_e1_n256_s0.keras"))
    cached = trained_article_cnn(epochs=1, n_train=256, seed=0)
    _, (xt, _) = load_mnist()
    x = prepare_images(xt[:50])
    assert np.array_equal(fresh.predict(x, verbose=0), cached.predict(x, verbose=0))
    with pytest.raises(ValueError):
        trained_article_cnn(epochs=0)
    with pytest.raises(ValueError):
        trained_article_cnn(epochs=1, n_train=70_000)


def test_checkpoint_round_trip_and_errors(tmp_path):
    import json

    import torch

    from bigmodel_utils.models import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "sub" / "m.pt", describe={"width": 3}, config={"width": 3},
                           state={"w": torch.ones(2)})
    assert json.loads(path.with_suffix(".json").read_text()) == {"width": 3}
    back = load_checkpoint(path)
    assert back["config"] == {"width": 3} and torch.equal(back["state"]["w"], torch.ones(2))
    with pytest.raises(ValueError, match="something to save"):
        save_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(FileNotFoundError, match="run the chapter"):
        load_checkpoint(tmp_path / "missing.pt", "run the chapter")
    from fractions import Fraction

    torch.save({"obj": Fraction(1, 3)}, tmp_path / "pickled.pt")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "pickled.pt")  # weights_only refuses arbitrary pickled objects


@pytest.fixture
def tiny_mnist(monkeypatch):
    """64 blank training images instead of MNIST, to keep the cache tests fast."""
    from bigmodel_utils import data

    x, y = np.zeros((64, 28, 28), np.uint8), np.arange(64, dtype=np.uint8) % 10
    monkeypatch.setattr(data, "load_mnist", lambda **kw: ((x, y), (x[:8], y[:8])))


def _fake_fit(calls):
    """Stand-in for training.fit_classifier: no training, but ticks the epoch callbacks like Keras."""
    def fit(model, train, val, *, epochs, batch_size, progress, callbacks):
        calls.append(epochs)
        for cb in callbacks:
            for e in range(epochs):
                cb.on_epoch_end(e, {})
    return fit


@pytest.mark.parametrize("damage", ["truncated", "empty", "no sidecar", "wrong sidecar"])
def test_trained_article_cnn_retrains_a_corrupt_cache(tmp_path, monkeypatch, capsys, tiny_mnist, damage):
    from bigmodel_utils import training
    from bigmodel_utils.data import checksum_path, load_cached
    from bigmodel_utils.models import trained_article_cnn

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(training, "fit_classifier", _fake_fit(calls))
    first = trained_article_cnn(epochs=1, n_train=64, seed=0, progress=False)
    path = tmp_path / "article_cnn_e1_n64_s0.keras"
    trained_article_cnn(epochs=1, n_train=64, seed=0, progress=False)
    assert calls == [1] and capsys.readouterr() == ("", "")  # a valid cache: loaded, nothing printed
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no sidecar":
        checksum_path(path).unlink()
    else:
        checksum_path(path).write_text("0" * 64 + "  " + path.name + "\n")
    again = trained_article_cnn(epochs=1, n_train=64, seed=0, progress=False)
    out, err = capsys.readouterr()
    assert calls == [1, 1] and out == ""
    assert err.count("\n") == 1 and f"cached model {path} is corrupt (" in err and "retraining it" in err
    assert load_cached(path, lambda p: True) is True  # re-cached with a matching checksum
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))  # seeded


def test_trained_article_cnn_reports_a_file_that_does_not_load(tmp_path, monkeypatch, capsys, tiny_mnist):
    """A checksum that matches but a file Keras cannot read (a truncated zip raises KeyError)."""
    from bigmodel_utils import training
    from bigmodel_utils.data import save_cached
    from bigmodel_utils.models import trained_article_cnn

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(training, "fit_classifier", _fake_fit([]))
    path = tmp_path / "article_cnn_e1_n64_s0.keras"
    save_cached(path, b"PK\x03\x04 not a whole zip")
    trained_article_cnn(epochs=1, n_train=64, seed=0, progress=True)
    err = capsys.readouterr().err
    assert f"cached model {path} is corrupt (it does not load: " in err and "retraining it" in err
    assert "article CNN, 1 epoch(s) on 64 images" in err  # the bar is still drawn


def test_trained_article_cnn_cache_writes_use_unique_temp_names(tmp_path, monkeypatch, tiny_mnist):
    import tempfile

    from bigmodel_utils import training
    from bigmodel_utils.models import trained_article_cnn

    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(training, "fit_classifier", _fake_fit([]))
    made, real = [], tempfile.mkstemp
    def mkstemp(**kw):
        fd, name = real(**kw)
        made.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    for _ in range(2):
        trained_article_cnn(epochs=1, n_train=64, seed=0, use_cache=True, progress=False)
        (tmp_path / "article_cnn_e1_n64_s0.keras").unlink()
    models = [m for m in made if m.endswith(".keras")]
    assert len(models) == 2 and len(set(models)) == 2
    assert all(Path(m).parent == tmp_path and Path(m).name.startswith(".article_cnn_e1_n64_s0.keras.") for m in models)
    assert not any(Path(m).exists() for m in made)


def test_load_checkpoint_names_path_and_remedy_for_damaged_files(tmp_path):
    import torch

    from bigmodel_utils.models import CheckpointError, load_checkpoint, save_checkpoint

    good = save_checkpoint(tmp_path / "good.pt", state={"w": torch.ones(100)})
    blob = good.read_bytes()
    cases = {"empty.pt": (b"", "empty"), "truncated.pt": (blob[: len(blob) // 2], "truncated"),
             "short.pt": (blob[:10], "truncated"), "garbage.pt": (b"hello world", "truncated")}
    for name, (content, what) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=what) as err:
            load_checkpoint(tmp_path / name, "run the chapter again")
        assert str(tmp_path / name) in str(err.value) and str(err.value).endswith("run the chapter again")
    from fractions import Fraction

    torch.save({"obj": Fraction(1, 3)}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_checkpoint(tmp_path / "pickled.pt", "run the chapter again")
    assert str(tmp_path / "pickled.pt") in str(err.value) and str(err.value).endswith("run the chapter again")
    assert isinstance(err.value, ValueError)


class _Custom:
    pass


@pytest.mark.parametrize("blob, where", [
    (dict(fn=lambda x: x), "'fn'"),
    (dict(config={"act": _Custom()}), r"config\['act'\] is a [\w.]*_Custom"),
    (dict(config={"sizes": [1, np.int64(2)]}), r"config\['sizes'\]\[1\] is a numpy.int64"),
    (dict(state={("a", 1): 1}), "has the key"),
    (dict(state={"w": np.zeros(2)}), r"state\['w'\] is a numpy.ndarray"),
])
def test_save_checkpoint_refuses_what_its_loader_would_refuse(tmp_path, blob, where):
    from bigmodel_utils.models import save_checkpoint

    with pytest.raises(ValueError, match=where):
        save_checkpoint(tmp_path / "sub" / "m.pt", describe={"a": 1}, **blob)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the folder


def test_save_checkpoint_accepts_plain_data_and_is_atomic(tmp_path, monkeypatch):
    import torch

    from bigmodel_utils.models import load_checkpoint, save_checkpoint

    net = torch.nn.Linear(2, 1)
    plain = dict(state=net.state_dict(), p=torch.nn.Parameter(torch.ones(1)), cfg={"a": [1, 2.5, True, None, "x"],
                 "t": (1, 2), 3: {"n": None}})
    path = save_checkpoint(tmp_path / "m.pt", describe={"a": 1}, **plain)
    back = load_checkpoint(path)
    assert back["cfg"] == plain["cfg"] and torch.equal(back["state"]["weight"], net.weight.detach())
    before = (path.read_bytes(), path.with_suffix(".json").read_text())

    def interrupted(obj, f):
        Path(f).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, describe={"a": 2}, state={"w": torch.zeros(1)})
    assert (path.read_bytes(), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]
    monkeypatch.undo()
    with pytest.raises(TypeError):  # describe must be JSON; checked before anything is written
        save_checkpoint(tmp_path / "n.pt", describe={"f": object()}, w=torch.ones(1))
    assert not (tmp_path / "n.pt").exists()
