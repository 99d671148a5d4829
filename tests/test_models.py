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
