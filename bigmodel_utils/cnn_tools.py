"""Looking inside a convolutional network: feature maps, receptive fields, weight
sharing and translation robustness.

The CNN chapter turns the article's one-line description of convolution and
pooling into measurements; the reusable parts live here so the notebook shows
results, not plumbing. Keras models (torch backend) are expected, as built by
:func:`bigmodel_utils.models.build_article_cnn`.
"""
from __future__ import annotations

import numpy as np

from .plots import MAX_WIDTH_IN, bare_axes


def conv_params(kernel: int, c_in: int, c_out: int) -> int:
    """Parameters of a ``kernel``×``kernel`` convolution: ``(k²·c_in + 1)·c_out`` (one bias per filter)."""
    if min(kernel, c_in, c_out) < 1:
        raise ValueError("kernel, c_in and c_out must be positive")
    return (kernel * kernel * c_in + 1) * c_out


def dense_params(in_shape, out_shape) -> int:
    """Parameters of a dense layer mapping a tensor of ``in_shape`` to one of ``out_shape`` (weights + biases)."""
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if n_in < 1 or n_out < 1:
        raise ValueError(f"shapes must be non-empty, got {in_shape} and {out_shape}")
    return n_in * n_out + n_out


def conv_as_matrix(kernel: np.ndarray, height: int, width: int) -> np.ndarray:
    """The dense matrix that performs a "valid" 2-D cross-correlation with one ``kernel``.

    Row ``(i, j)`` of the result holds the kernel placed at offset ``(i, j)`` of a
    ``height``×``width`` image and zeros elsewhere, so ``M @ image.ravel()`` equals
    the convolution output (what Keras's ``Conv2D`` computes, without bias). It
    makes weight sharing visible: every row holds the same few numbers.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise ValueError(f"expected a 2-D kernel, got shape {kernel.shape}")
    kh, kw = kernel.shape
    if height < kh or width < kw:
        raise ValueError(f"a {kh}×{kw} kernel does not fit a {height}×{width} image")
    oh, ow = height - kh + 1, width - kw + 1
    m = np.zeros((oh * ow, height * width))
    for i in range(oh):
        for j in range(ow):
            patch = np.zeros((height, width))
            patch[i:i + kh, j:j + kw] = kernel
            m[i * ow + j] = patch.ravel()
    return m


def receptive_field(layers) -> "pd.DataFrame":  # noqa: F821
    """Receptive field of each layer of a stack of valid convolutions and poolings.

    ``layers`` is a sequence of ``(name, kernel, stride)``. With ``r`` the field
    size and ``j`` the jump (input pixels between neighbouring units), each layer
    gives ``r ← r + (k − 1)·j`` and ``j ← j·s``, starting from ``r = j = 1`` at the
    input. Without padding, unit ``i`` of a layer sees input pixels
    ``i·j … i·j + r − 1`` along each axis. Returns a DataFrame (layer, kernel,
    stride, field, jump).
    """
    import pandas as pd

    r, j, rows = 1, 1, []
    for name, k, s in layers:
        if k < 1 or s < 1:
            raise ValueError(f"layer {name!r}: kernel and stride must be positive, got {k} and {s}")
        r, j = r + (k - 1) * j, j * s
        rows.append({"layer": name, "kernel": k, "stride": s, "field": r, "jump": j})
    if not rows:
        raise ValueError("give at least one layer")
    return pd.DataFrame(rows)


def spatial_layers(model, until: str | None = None):
    """``(name, kernel, stride)`` of the model's Conv2D and pooling layers, up to and including ``until``."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if layer.padding != "valid" or layer.dilation_rate != (1, 1):
                raise ValueError(f"{layer.name}: only valid, undilated convolutions are supported")
            out.append((layer.name, layer.kernel_size[0], layer.strides[0]))
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            out.append((layer.name, layer.pool_size[0], layer.strides[0]))
        if until is not None and layer.name == until:
            return out
    if until is not None:
        raise ValueError(f"the model has no layer named {until!r}")
    return out


def layer_model(model, layer_name: str):
    """A Keras model from the input of ``model`` to the output of its layer ``layer_name``."""
    import keras

    return keras.Model(model.inputs, model.get_layer(layer_name).output)


def feature_maps(model, images: np.ndarray, layer_names) -> dict:
    """Outputs of the named layers for ``images`` (prepared, shape (N, H, W, C)), as NumPy arrays."""
    import keras

    names = list(layer_names)
    if not names:
        raise ValueError("give at least one layer name")
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = sub.predict(np.asarray(images, np.float32), verbose=0)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def gradient_support(model, layer_name: str, images: np.ndarray, position: tuple[int, int]) -> np.ndarray:
    """Which input pixels can change one unit of a layer: the non-zero pattern of its gradient.

    Sums the layer's output at spatial ``position`` (all channels) and takes its
    gradient with respect to every image of ``images``; returns a boolean
    ``(H, W)`` mask of pixels with a non-zero gradient for at least one image.
    Several random images are needed because ReLU and max-pooling zero some paths
    for any single input.
    """
    import torch

    x = torch.tensor(np.asarray(images, np.float32), requires_grad=True)
    if x.ndim != 4:
        raise ValueError(f"expected prepared images (N, H, W, C), got shape {tuple(x.shape)}")
    out = layer_model(model, layer_name)(x)
    i, j = position
    if not (0 <= i < out.shape[1] and 0 <= j < out.shape[2]):
        raise ValueError(f"position {position} lies outside the {out.shape[1]}×{out.shape[2]} map of {layer_name}")
    out[:, i, j, :].sum().backward()
    return (x.grad.abs().sum(dim=(0, 3)) > 0).numpy()


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (inclusive) of the True pixels of a 2-D mask."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("expected a 2-D mask with at least one True pixel")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate images (N, H, W[, C]) by ``dy`` rows and ``dx`` columns, filling with zeros (background)."""
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"expected a batch of images (N, H, W[, C]), got shape {images.shape}")
    h, w = images.shape[1:3]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) moves a {h}×{w} image out of the frame")
    out = np.zeros_like(images)
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out


def shift_robustness(models: dict, images: np.ndarray, labels: np.ndarray, max_shift: int) -> "pd.DataFrame":  # noqa: F821
    """Accuracy of each model on images shifted by 0..``max_shift`` pixels.

    For a shift of ``k`` the accuracy is averaged over the four directions (up,
    down, left, right). ``models`` maps a name to a Keras model taking prepared
    images. Returns a DataFrame with one row per shift and one column per model.
    """
    import pandas as pd

    if max_shift < 0:
        raise ValueError(f"max_shift must be non-negative, got {max_shift}")
    labels = np.asarray(labels)
    rows = []
    for k in range(max_shift + 1):
        moves = [(0, 0)] if k == 0 else [(-k, 0), (k, 0), (0, -k), (0, k)]
        row = {"shift (pixels)": k}
        for name, model in models.items():
            accs = [float((model.predict(shift_images(images, dy, dx), batch_size=1024, verbose=0).argmax(1)
                           == labels).mean()) for dy, dx in moves]
            row[name] = float(np.mean(accs))
        rows.append(row)
    return pd.DataFrame(rows)


def multiply_adds(model) -> "pd.DataFrame":  # noqa: F821
    """Multiply-add operations per image of each Conv2D and Dense layer (weights × positions they are used at)."""
    import keras
    import pandas as pd

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            _, oh, ow, c_out = layer.output.shape
            weights, uses = kh * kw * c_in * c_out, oh * ow
        elif isinstance(layer, keras.layers.Dense):
            weights, uses = layer.input.shape[-1] * layer.units, 1
        else:
            continue
        rows.append({"layer": layer.name, "weights": int(weights), "uses per weight": int(uses),
                     "multiply-adds": int(weights * uses)})
    if not rows:
        raise ValueError("the model has no Conv2D or Dense layer")
    return pd.DataFrame(rows)


def build_dense_baseline(hidden: int = 117, n_classes: int = 10, name: str = "dense_baseline"):
    """A fully connected network for 28×28×1 images: flatten → dense ``hidden`` (ReLU) → softmax.

    With the default 117 hidden units it has 93,025 parameters, within 0.3 % of the
    article's CNN (93,322), so the two can be compared at equal size.
    """
    import keras
    from keras import layers

    if hidden < 1 or n_classes < 2:
        raise ValueError(f"need hidden >= 1 and n_classes >= 2, got {hidden} and {n_classes}")
    return keras.Sequential([keras.Input(shape=(28, 28, 1), name="image"), layers.Flatten(name="flatten"),
                             layers.Dense(hidden, activation="relu", name="hidden"),
                             layers.Dense(n_classes, activation="softmax", name="probabilities")], name=name)


def filters_figure(kernel: np.ndarray, title: str, ncols: int = 8):
    """The 2-D filters of a first convolution (kernel shape (k, k, 1, n)), each on its own symmetric colour scale."""
    import matplotlib.pyplot as plt

    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 1:
        raise ValueError(f"expected a first-layer kernel of shape (k, k, 1, n), got {kernel.shape}")
    n = kernel.shape[3]
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.95 * ncols, 1.2 * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for f, ax in zip(range(n), axes.flat):
        w = kernel[:, :, 0, f]
        lim = float(np.abs(w).max()) or 1.0
        ax.imshow(w, cmap="PuOr", vmin=-lim, vmax=lim)
        ax.set_title(f"filter {f}", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def feature_maps_figure(image: np.ndarray, maps: dict, title: str, per_layer: int = 6):
    """One row per layer: the input image, then the first ``per_layer`` channels of that layer's maps (one image)."""
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("no feature maps given")
    width = min(1.1 * (per_layer + 1), MAX_WIDTH_IN)  # 10 pt titles fit; every column fits the book's column
    fig, axes = plt.subplots(len(maps), per_layer + 1, figsize=(width, 1.55 * len(maps) + 0.5), squeeze=False)
    for row, (name, m) in zip(axes, maps.items()):
        m = np.asarray(m)
        if m.ndim != 3:
            raise ValueError(f"maps[{name!r}] must be (H, W, C) for one image, got shape {m.shape}")
        row[0].imshow(np.squeeze(image), cmap="gray_r")
        row[0].set_title("input", fontsize=10)
        for c, ax in enumerate(row[1:]):
            if c < m.shape[2]:
                ax.imshow(m[:, :, c], cmap="cividis")
                ax.set_title(f"{name} ch {c}\n{m.shape[0]}×{m.shape[1]}", fontsize=10)
        bare_axes(row)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
