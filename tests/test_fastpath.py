import numpy as np
import pytest
import torch

from bigmodel_utils import fastpath
from bigmodel_utils.fastpath import ArticleCNN, FastRun, accuracy, count_parameters, from_keras, to_tensor, train_fast


def test_same_network_as_the_keras_model():
    from bigmodel_utils.devices import seed_everything
    from bigmodel_utils.models import build_article_cnn

    seed_everything(0)
    km = build_article_cnn()
    net = from_keras(km)
    assert count_parameters(net) == count_parameters(ArticleCNN()) == 93_322
    x = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    keras_probs = km.predict(x[..., None].astype(np.float32) / 255, verbose=0)
    torch_probs = torch.softmax(net(to_tensor(x)), 1).detach().numpy()
    assert np.abs(keras_probs - torch_probs).max() < 1e-5


def test_from_keras_rejects_other_models():
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="3 Conv2D"):
        from_keras(other)


def test_forward_checks_shape():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        ArticleCNN()(torch.zeros(2, 28, 28))


def test_to_tensor():
    t = to_tensor(np.full((2, 28, 28), 255, np.uint8), channels_last=True)
    assert t.shape == (2, 1, 28, 28) and t.max() == 1.0 and t.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        to_tensor(np.zeros((2, 28, 28), np.float32))


def test_train_fast_learns_and_times_checkpoints(mnist):
    (x, y), (xt, yt) = mnist
    torch.manual_seed(0)
    net = ArticleCNN()
    run = train_fast(net, to_tensor(x[:2048]), torch.from_numpy(y[:2048]).long(), to_tensor(xt[:500]),
                     torch.from_numpy(yt[:500]).long(), epochs=1, batch_size=64, max_lr=3e-3, progress=False)
    assert len(run.checkpoints) == 2 and run.images_per_second > 0
    assert run.checkpoints[-1][2] > 0.6  # 1 epoch on 2,048 images
    assert run.time_to(0.0) == run.checkpoints[0][1] and run.time_to(1.01) is None
    with pytest.raises(ValueError):
        train_fast(net, to_tensor(x[:10]), torch.zeros(5).long(), to_tensor(xt[:5]), torch.zeros(5).long())
    with pytest.raises(ValueError):
        train_fast(net, to_tensor(x[:10]), torch.zeros(10).long(), to_tensor(xt[:5]), torch.zeros(5).long(), epochs=0)


def test_accuracy_and_fastrun():
    net = ArticleCNN()
    x = to_tensor(np.zeros((4, 28, 28), np.uint8))
    pred = net(x).argmax(1)
    assert accuracy(net, x, pred) == 1.0
    assert FastRun(checkpoints=[(1, 2.0, 0.5)]).time_to(0.5) == 2.0
    assert fastpath.TRAIN_FLOP_PER_IMAGE > 1e7
