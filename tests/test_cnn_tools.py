import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from bigmodel_utils import cnn_tools  # noqa: E402


@pytest.fixture(scope="module")
def cnn():
    from bigmodel_utils.devices import seed_everything
    from bigmodel_utils.models import build_article_cnn

    seed_everything(0)
    return build_article_cnn()


def test_parameter_formulas():
    assert cnn_tools.conv_params(3, 1, 32) == 320
    assert cnn_tools.conv_params(3, 32, 64) == 18_496
    assert cnn_tools.dense_params((28, 28, 1), (26, 26, 32)) == 784 * 21_632 + 21_632
    with pytest.raises(ValueError, match="positive"):
        cnn_tools.conv_params(0, 1, 1)
    with pytest.raises(ValueError, match="non-empty"):
        cnn_tools.dense_params((0,), (3,))


def test_conv_as_matrix_matches_cross_correlation():
    from scipy.signal import correlate2d

    rng = np.random.default_rng(0)
    k, img = rng.normal(size=(3, 3)), rng.normal(size=(7, 6))
    m = cnn_tools.conv_as_matrix(k, 7, 6)
    assert m.shape == (5 * 4, 42)
    assert np.allclose(m @ img.ravel(), correlate2d(img, k, mode="valid").ravel())
    with pytest.raises(ValueError, match="2-D kernel"):
        cnn_tools.conv_as_matrix(np.ones(3), 5, 5)
    with pytest.raises(ValueError, match="does not fit"):
        cnn_tools.conv_as_matrix(np.ones((3, 3)), 2, 5)


def test_receptive_field_formula_and_model_layers(cnn):
    rf = cnn_tools.receptive_field([("a", 3, 1), ("b", 2, 2), ("c", 3, 1)])
    assert rf["field"].tolist() == [3, 4, 8] and rf["jump"].tolist() == [1, 2, 2]
    layers = cnn_tools.spatial_layers(cnn, until="conv3")
    assert [name for name, _, _ in layers] == ["conv1", "pool1", "conv2", "pool2", "conv3"]
    assert cnn_tools.receptive_field(layers)["field"].iloc[-1] == 18
    assert len(cnn_tools.spatial_layers(cnn)) == 5
    with pytest.raises(ValueError, match="at least one"):
        cnn_tools.receptive_field([])
    with pytest.raises(ValueError, match="positive"):
        cnn_tools.receptive_field([("x", 0, 1)])
    with pytest.raises(ValueError, match="no layer named"):
        cnn_tools.spatial_layers(cnn, until="conv9")


def test_spatial_layers_refuses_padding():
    import keras

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    with pytest.raises(ValueError, match="valid"):
        cnn_tools.spatial_layers(m)


def test_feature_maps_and_gradient_support(cnn):
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    maps = cnn_tools.feature_maps(cnn, x[:2], ["conv1", "pool1"])
    assert maps["conv1"].shape == (2, 26, 26, 32) and maps["pool1"].shape == (2, 13, 13, 32)
    assert np.array_equal(maps["conv1"].reshape(2, 13, 2, 13, 2, 32).max(axis=(2, 4)), maps["pool1"])
    assert cnn_tools.feature_maps(cnn, x[:1], ["conv3"])["conv3"].shape == (1, 3, 3, 64)
    with pytest.raises(ValueError, match="at least one"):
        cnn_tools.feature_maps(cnn, x, [])
    mask = cnn_tools.gradient_support(cnn, "conv2", x, (1, 2))
    # conv2 unit (1, 2): field 8, jump 2 -> rows 2..9, columns 4..11
    assert cnn_tools.bounding_box(mask) == (2, 9, 4, 11)
    with pytest.raises(ValueError, match="outside"):
        cnn_tools.gradient_support(cnn, "conv3", x, (3, 0))
    with pytest.raises(ValueError, match="prepared images"):
        cnn_tools.gradient_support(cnn, "conv3", x[..., 0], (0, 0))


def test_bounding_box():
    m = np.zeros((5, 6), bool)
    m[1:3, 2:5] = True
    assert cnn_tools.bounding_box(m) == (1, 2, 2, 4)
    with pytest.raises(ValueError, match="True pixel"):
        cnn_tools.bounding_box(np.zeros((3, 3), bool))


def test_shift_images():
    img = np.zeros((1, 5, 5), np.uint8)
    img[0, 2, 2] = 9
    assert cnn_tools.shift_images(img, 1, -2)[0, 3, 0] == 9
    assert cnn_tools.shift_images(img, 0, 0).tolist() == img.tolist()
    assert cnn_tools.shift_images(img, 3, 0).sum() == 0  # moved out of the frame
    assert cnn_tools.shift_images(img[..., None], -1, 1).shape == (1, 5, 5, 1)
    with pytest.raises(ValueError, match="out of the frame"):
        cnn_tools.shift_images(img, 5, 0)
    with pytest.raises(ValueError, match="batch"):
        cnn_tools.shift_images(img[0], 1, 1)


class Constant:
    def __init__(self, k):
        self.k = k

    def predict(self, x, batch_size=None, verbose=0):
        p = np.zeros((len(x), 10))
        p[:, self.k] = 1
        return p


def test_shift_robustness():
    x = np.zeros((4, 28, 28, 1), np.float32)
    df = cnn_tools.shift_robustness({"zero": Constant(0), "one": Constant(1)}, x, np.array([0, 0, 1, 0]), 2)
    assert df["shift (pixels)"].tolist() == [0, 1, 2]
    assert df["zero"].tolist() == [0.75] * 3 and df["one"].tolist() == [0.25] * 3
    with pytest.raises(ValueError, match="non-negative"):
        cnn_tools.shift_robustness({}, x, np.zeros(4), -1)


def test_multiply_adds_and_dense_baseline(cnn):
    macs = cnn_tools.multiply_adds(cnn)
    assert macs["layer"].tolist() == ["conv1", "conv2", "conv3", "dense", "probabilities"]
    assert macs["multiply-adds"].iloc[0] == 3 * 3 * 32 * 26 * 26
    dense = cnn_tools.build_dense_baseline()
    assert dense.count_params() == 93_025
    assert cnn_tools.multiply_adds(dense)["multiply-adds"].sum() == 784 * 117 + 117 * 10
    with pytest.raises(ValueError, match="hidden"):
        cnn_tools.build_dense_baseline(hidden=0)
    import keras

    with pytest.raises(ValueError, match="no Conv2D"):
        cnn_tools.multiply_adds(keras.Sequential([keras.Input((4,)), keras.layers.Activation("relu")]))


def test_figures(cnn):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernel = np.asarray(cnn.get_layer("conv1").get_weights()[0])
    fig = cnn_tools.filters_figure(kernel, "filters")
    assert fig._suptitle.get_text() == "filters"
    with pytest.raises(ValueError, match="first-layer kernel"):
        cnn_tools.filters_figure(np.zeros((3, 3, 2, 4)), "x")
    fig2 = cnn_tools.feature_maps_figure(np.zeros((28, 28)), {"a": np.zeros((4, 4, 2))}, "maps", per_layer=3)
    assert len(fig2.axes) == 4
    with pytest.raises(ValueError, match="no feature maps"):
        cnn_tools.feature_maps_figure(np.zeros((28, 28)), {}, "x")
    with pytest.raises(ValueError, match="one image"):
        cnn_tools.feature_maps_figure(np.zeros((28, 28)), {"a": np.zeros((1, 4, 4, 2))}, "x")
    plt.close("all")
