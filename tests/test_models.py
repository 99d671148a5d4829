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
