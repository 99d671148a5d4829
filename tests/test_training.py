import numpy as np
import pytest

from bigmodel_utils import training
from bigmodel_utils.training import ClassifierReport, confusion_matrix, evaluate_classifier, fit_classifier


class FixedModel:
    """Stands in for a Keras model: returns given probabilities."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict(self, x, batch_size=None, verbose=0):
        return self.probs[: len(x)]


def test_confusion_matrix():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.array([0]), np.array([0, 1]), 2)


def test_evaluate_classifier_and_errors():
    probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]]
    rep = evaluate_classifier(FixedModel(probs), np.zeros((4, 1)), np.array([0, 1, 1, 0]))
    assert isinstance(rep, ClassifierReport)
    assert rep.accuracy == 0.5
    assert rep.confusion.tolist() == [[1, 1], [1, 1]]
    assert rep.per_class_accuracy.tolist() == [0.5, 0.5]
    assert rep.errors.tolist() == [2, 3]  # most confidently wrong first (0.6 before 0.55)
    with pytest.raises(ValueError, match="labels"):
        evaluate_classifier(FixedModel(probs), np.zeros((4, 1)), np.array([0, 1]))


def test_fit_classifier_learns_a_tiny_subset(mnist, capsys):
    from bigmodel_utils.data import one_hot, prepare_images
    from bigmodel_utils.devices import seed_everything
    from bigmodel_utils.models import build_article_cnn

    (x, y), _ = mnist
    seed_everything(0)
    model = build_article_cnn()
    X, Y = prepare_images(x[:512]), one_hot(y[:512])
    hist = fit_classifier(model, (X[:384], Y[:384]), (X[384:], Y[384:]), epochs=2, batch_size=64)
    assert hist.columns.tolist()[:1] == ["epoch"] and len(hist) == 2
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(hist.columns)
    assert hist["loss"].iloc[1] < hist["loss"].iloc[0]
    out = capsys.readouterr()
    assert "epoch 2/2: accuracy" in out.out and "batch" in out.err  # summary line and tqdm bar


def test_fit_classifier_rejects_bad_arguments():
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.zeros((4, 10), np.float32)
    with pytest.raises(ValueError, match="differ in length"):
        fit_classifier(None, (x, y[:3]), (x, y), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="positive"):
        fit_classifier(None, (x, y), (x, y), epochs=0, batch_size=2)


def test_progress_callback_is_a_keras_callback():
    import keras

    assert isinstance(training.progress_callback(), keras.callbacks.Callback)
